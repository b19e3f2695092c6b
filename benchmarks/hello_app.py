"""The baseline for the API benchmarks: a hello-world FastAPI endpoint, served like the API.

Same framework settings as the API (FastAPI's own OpenTelemetry hooks off), same server flags.
"""

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from armor_ab.api.app import TELEMETRY

app = FastAPI(telemetry=TELEMETRY)


@app.get("/hello")
async def hello():
    return JSONResponse({"hello": "world"})


if __name__ == "__main__":
    import sys

    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                access_log=False, log_level="warning")
