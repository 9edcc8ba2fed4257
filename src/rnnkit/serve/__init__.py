"""``rnnkit serve``: a trained run's methods over HTTP/JSON, concurrent requests micro-batched.

:mod:`rnnkit.serve.schema` holds each route's request schema (the one source of the request
checks and of :mod:`rnnkit.serve.openapi`'s description), :mod:`rnnkit.serve.methods` runs a
batch of requests on :mod:`rnnkit.inference`, :mod:`rnnkit.serve.batcher` gathers concurrent
requests into those batches on one model thread, :mod:`rnnkit.serve.app` is the Starlette app
and :mod:`rnnkit.serve.server` runs it on uvicorn.
"""
