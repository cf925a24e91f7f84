"""Model servers the tests start for real: a misbehaving one of ours, and third-party servers
(the seed's FastAPI service, BentoML, MLServer, MLflow) each in a virtual environment of its own.
"""
