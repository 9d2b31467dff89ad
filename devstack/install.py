"""What the stack needs on the machine: Debian packages (apt-get, as root), Java 17+, and the Kafka
broker's jars, which Maven fetches from Maven Central (there is no other download source here)."""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from devstack.output import Failure, failure_with_log, say
from devstack.process import run_logged


def ensure_package(command: str, package: str, logs: Path) -> None:
    """Install `package` with apt-get when `command` (a name, or the path of a file) is missing."""
    if shutil.which(command) or (os.sep in command and os.path.exists(command)):
        return
    if os.geteuid() != 0:
        raise Failure(f"{package} is not installed: run 'sudo apt-get update && sudo apt-get install -y "
                      f"{package}'")
    say(f"installing {package} (apt-get install {package})")
    log = logs / "apt.log"
    log.write_bytes(b"")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not (run_logged(["apt-get", "update", "-qq"], log, env=env)
            and run_logged(["apt-get", "install", "-y", "-qq", package], log, env=env)):
        raise Failure(f"apt-get install {package} failed; read {log}")


def check_java() -> None:
    if not shutil.which("java"):
        raise Failure("java not found: Kafka and Keycloak need Java 17+ (apt-get install -y "
                      "openjdk-17-jre-headless)")
    output = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    # "1.8.0_392" is Java 8.
    major = 0 if not match else int(match[2] if match[1] == "1" and match[2] else match[1])
    if major < 17:
        found = match[0] if match else "unknown"
        raise Failure(f"Kafka and Keycloak need Java 17+, but 'java' is version {found}")


def kafka_jars(pom: Path, downloads: Path, logs: Path) -> Path:
    """The runtime dependencies of `pom` (the broker's classpath directory), fetched with Maven
    into DOWNLOADS/kafka/libs-<checksum of the pom> through the Maven repository DOWNLOADS/m2.
    Named by the pom, a directory is never replaced: an edit of the pom fetches into a new one,
    under no running broker's feet, and homes that share downloads fetch once."""
    libs = downloads / "kafka" / f"libs-{hashlib.sha256(pom.read_bytes()).hexdigest()[:12]}"
    if libs.is_dir():
        return libs
    if not shutil.which("mvn"):
        raise Failure("mvn not found: it fetches Kafka (apt-get install -y maven)")
    log = logs / "maven.log"
    say(f"Kafka: fetching the broker's jars with Maven into {libs} (once; log {log})")
    log.write_bytes(b"")
    staging = libs.with_name(f"{libs.name}.tmp-{os.getpid()}")
    if not run_logged(["mvn", "-B", "-ntp", "-f", str(pom), f"-Dmaven.repo.local={downloads / 'm2'}",
                       "dependency:copy-dependencies", "-DincludeScope=runtime",
                       f"-DoutputDirectory={staging}"], log):
        shutil.rmtree(staging, ignore_errors=True)
        raise failure_with_log("Maven could not fetch Kafka", log)
    try:
        staging.rename(libs)
    except OSError:  # another run sharing the downloads finished first
        shutil.rmtree(staging, ignore_errors=True)
    return libs


def maven_fetch(artifact: str, downloads: Path, target: Path, logs: Path) -> Path:
    """One artifact (group:name:version:type) copied by Maven into `target` through the Maven
    repository DOWNLOADS/m2 (homes that share downloads fetch it once); its path."""
    if not shutil.which("mvn"):
        raise Failure(f"mvn not found: it fetches {artifact} (apt-get install -y maven)")
    log = logs / "maven.log"
    log.write_bytes(b"")
    if not run_logged(["mvn", "-B", "-ntp", f"-Dmaven.repo.local={downloads / 'm2'}", "dependency:copy",
                       f"-Dartifact={artifact}", f"-DoutputDirectory={target}"], log):
        raise failure_with_log(f"Maven could not fetch {artifact}", log)
    group, name, version, kind = artifact.split(":")
    fetched = target / f"{name}-{version}.{kind}"
    if not fetched.is_file():
        raise failure_with_log(f"Maven fetched {artifact} but {fetched} is missing", log)
    return fetched
