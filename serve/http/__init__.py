"""The HTTP front end: KServe v2 REST (JSON and Triton's binary tensors), images for curl,
and the playground page, on aiohttp, in the same process and on the same core as gRPC."""
