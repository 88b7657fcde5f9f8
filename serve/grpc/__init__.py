"""The gRPC front end: zoo.v1.Predictor and KServe v2 servicers over serve.core, with
health, reflection and the server's lifecycle."""
