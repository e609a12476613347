"""``camflow console``: the operators' web console (live alerts, acknowledgements, cameras,
subjects), served by FastAPI on 127.0.0.1 by default."""
