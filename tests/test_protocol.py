"""The sealed connection reply: only the launch that has the key can produce one that opens."""

import base64
import json

import pytest

from slurmgate.provisioners.protocol import REPLY_PREFIX, ReplyError, new_reply_key, open_reply, seal_reply

INFO = {"ip": "10.0.0.5", "shell_port": 40001, "iopub_port": 40002, "stdin_port": 40003,
        "control_port": 40004, "hb_port": 40005, "transport": "tcp", "hostname": "gpu01", "pid": 77}


def test_reply_round_trip():
    key = new_reply_key()
    reply = seal_reply(key, "kernel-a", "101", INFO)
    assert reply.startswith(REPLY_PREFIX)
    assert all(character not in reply for character in " |'\"\n")
    assert open_reply(key, "kernel-a", "101", reply) == INFO


def test_forged_reply_rejected():
    # A forger can read the kernel id and job id (both public in squeue) but not the key.
    forged = seal_reply(new_reply_key(), "kernel-a", "101", dict(INFO, ip="10.9.9.9"))
    with pytest.raises(ReplyError, match="failed authentication"):
        open_reply(new_reply_key(), "kernel-a", "101", forged)


def test_replayed_reply_other_job_rejected():
    key = new_reply_key()
    earlier = seal_reply(key, "kernel-a", "101", INFO)
    with pytest.raises(ReplyError, match="failed authentication"):
        open_reply(key, "kernel-a", "102", earlier)


def test_replayed_reply_other_kernel_rejected():
    key = new_reply_key()
    other = seal_reply(key, "kernel-b", "101", INFO)
    with pytest.raises(ReplyError, match="failed authentication"):
        open_reply(key, "kernel-a", "101", other)


def test_tampered_reply_rejected():
    key = new_reply_key()
    reply = seal_reply(key, "kernel-a", "101", INFO)
    body = bytearray(base64.urlsafe_b64decode(reply[len(REPLY_PREFIX):] + "=="))
    body[-1] ^= 1
    tampered = REPLY_PREFIX + base64.urlsafe_b64encode(bytes(body)).decode().rstrip("=")
    with pytest.raises(ReplyError, match="failed authentication"):
        open_reply(key, "kernel-a", "101", tampered)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("plain text", "does not start with"),
        (REPLY_PREFIX + "!!!", "not valid base64"),
        (REPLY_PREFIX + "AAAA", "too short"),
        (json.dumps(INFO), "does not start with"),
    ],
)
def test_malformed_reply_rejected(reply, message):
    with pytest.raises(ReplyError, match=message):
        open_reply(new_reply_key(), "kernel-a", "101", reply)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ip": "not-an-ip"}, "invalid IP address"),
        ({"ip": ""}, "invalid IP address"),
        ({"shell_port": 0}, "invalid shell_port"),
        ({"hb_port": 70000}, "invalid hb_port"),
        ({"iopub_port": "40002"}, "invalid iopub_port"),
        ({"control_port": True}, "invalid control_port"),
    ],
)
def test_sealed_but_invalid_info_rejected(change, message):
    key = new_reply_key()
    reply = seal_reply(key, "kernel-a", "101", dict(INFO, **change))
    with pytest.raises(ReplyError, match=message):
        open_reply(key, "kernel-a", "101", reply)


def test_bad_key_rejected():
    with pytest.raises(ReplyError, match="expected 32"):
        seal_reply(base64.b64encode(b"short").decode(), "k", "1", INFO)
