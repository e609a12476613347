"""Issue 16: infra/postgres.sh never adds ``trust`` to an existing cluster's pg_hba.conf (it
did: anyone on the machine could then log in to any database as anyone). Only a cluster the
script itself installed gets it, or any cluster with an explicit CAMFLOW_PG_TRUST=force.

PostgreSQL's tools are replaced by stubs on PATH that act out each situation."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "postgres.sh"
ORIGINAL_HBA = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n"

STUBS = {
    # answering once the (stub) server runs
    "pg_isready": '[ -f "$STATE/running" ]',
    "pg_lsclusters": '[ -f "$STATE/installed" ] || exit 0\n'
                     'if [ -f "$STATE/running" ]; then s=online; else s=down; fi\n'
                     'echo "15 main 5432 $s postgres /var/lib/postgresql/15/main log"',
    "pg_ctlcluster": 'touch "$STATE/running"',
    "pg_createcluster": 'true',
    "apt-get": 'case "$*" in *install*) touch "$STATE/installed" "$STATE/fresh";; esac',
    # TCP logins work only once pg_hba.conf trusts 127.0.0.1 (or a password is given)
    "psql": 'case "$*" in\n'
            '  *"show hba_file"*) echo "$HBA";;\n'
            '  *pg_reload_conf*) ;;\n'
            '  *) grep -q "^host all all 127.0.0.1/32 trust" "$HBA" || exit 2\n'
            '     case "$*" in *pg_database*) echo 1;; esac;;\n'
            'esac',
    "id": 'case "$1" in -u) echo 0;; -un) echo root;; *) echo "uid=0(root)";; esac',
    "runuser": 'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"',
    "sudo": 'while [ "${1#-}" != "$1" ]; do shift; [ "$1" = postgres ] && shift; done; exec "$@"',
    "install": 'n=$#; eval "src=\\${$((n-1))}"; eval "dst=\\${$n}"; cp "$src" "$dst"',
}


@pytest.fixture
def box(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in STUBS.items():
        stub = bin_dir / name
        stub.write_text("#!/usr/bin/env bash\n" + body + "\n")
        stub.chmod(0o755)
    hba = tmp_path / "pg_hba.conf"
    hba.write_text(ORIGINAL_HBA)

    def run(**env):
        full = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(state), "HBA": str(hba),
                "HOME": str(tmp_path), **env}
        return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True,
                              timeout=120)

    return run, state, hba


def test_an_existing_clusters_pg_hba_conf_is_left_alone(box):
    run, state, hba = box
    (state / "installed").touch()
    (state / "running").touch()
    result = run()
    assert hba.read_text() == ORIGINAL_HBA
    assert result.returncode == 1
    assert "not adding trust" in result.stderr and "PGPASSWORD" in result.stderr


def test_trust_is_added_to_an_existing_cluster_only_when_forced(box):
    run, state, hba = box
    (state / "installed").touch()
    (state / "running").touch()
    result = run(CAMFLOW_PG_TRUST="force")
    assert result.returncode == 0, result.stderr
    assert "host all all 127.0.0.1/32 trust" in hba.read_text()
    assert result.stdout.strip() == "postgresql://postgres@127.0.0.1:5432/camflow"


def test_a_cluster_the_script_installed_gets_dev_trust(box):
    run, state, hba = box
    result = run()
    assert (state / "fresh").exists()
    assert result.returncode == 0, result.stderr
    assert "host all all 127.0.0.1/32 trust" in hba.read_text()


def test_trust_can_be_switched_off_entirely(box):
    run, state, hba = box
    result = run(CAMFLOW_PG_TRUST="0")
    assert result.returncode == 1 and hba.read_text() == ORIGINAL_HBA
