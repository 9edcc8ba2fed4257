"""What is optimised and reported for each task."""
