"""Build step of deploy/Dockerfile: check the base image is the release the facts describe, then
pip-install the Python-backend models' dependencies and the HTTP gateway's, pinned by those facts.

    python3 install_stub_deps.py container_release.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(path: str) -> None:
    with open(path) as f:
        facts = json.load(f)
    python = "{}.{}".format(*sys.version_info[:2])
    if python != facts["stub_python"]:
        sys.exit(f"this image's python3 is {python}; the release facts say the stub runs {facts['stub_python']}")
    # the NGC image's own labels (server build.py writes both ENV lines, r24.10 through r26.08)
    for env, key in (("NVIDIA_TRITON_SERVER_VERSION", "release"), ("TRITON_SERVER_VERSION", "triton_server")):
        found = os.environ.get(env)
        if found and found != facts[key]:
            sys.exit(f"this image has {env}={found}; the release facts say {facts[key]} (build with "
                     f"--build-arg TRITON_RELEASE={facts['release']}, or update the facts and rerun tests/contract)")
    gateway = [f"{name}=={version}" for name, version in facts["gateway_packages"].items()]
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", f"numpy=={facts['numpy']}",
                    f"tokenizers=={facts['tokenizers']}", *gateway], check=True)


if __name__ == "__main__":
    main(sys.argv[1])
