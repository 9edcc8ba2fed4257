"""Observers and pictures: they read what training and models produce, never change it."""
