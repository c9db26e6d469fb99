"""Python's stock clients against a pushwire origin, as a Python backend and app would
use them: python-socketio's client (default transports: long-polling, then the
upgrade to WebSocket) subscribes, and the Pusher server SDK (pusher-http-python)
authorizes a private and a presence channel, triggers, and queries channels.

Usage: sdk_and_client.py <origin url> <app id> <app key> <app secret>

Each observation is one JSON line on stdout, named by "step"; the end-to-end test
asserts on them. Any exception ends the run with {"step": "error", ...}.
"""

import json
import queue
import sys
import traceback
from urllib.parse import urlparse

import pusher
import socketio

STEP_TIMEOUT = 20


def report(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def main():
    url, app_id, key, secret = sys.argv[1:5]
    target = urlparse(url)
    backend = pusher.Pusher(
        app_id=app_id, key=key, secret=secret, host=target.hostname, port=target.port, ssl=False
    )

    events = queue.Queue()
    sio = socketio.Client(reconnection=False)

    @sio.on("*")
    def any_event(name, *args):
        events.put((name, list(args)))

    def next_event(waiting_for):
        try:
            return events.get(timeout=STEP_TIMEOUT)
        except queue.Empty:
            raise TimeoutError(f"no event while waiting for {waiting_for}")

    sio.connect(url, auth={"app_key": key}, wait_timeout=STEP_TIMEOUT)
    name, args = next_event("pushwire:connection_established")
    socket_id = args[0]["socket_id"] if name == "pushwire:connection_established" else None
    report("established", name=name, socket_id=socket_id)

    def subscribe(payload):
        return sio.call("subscribe", payload, timeout=STEP_TIMEOUT)

    report("subscribe_public", ack=subscribe({"channel": "py-public"}))
    private = backend.authenticate(channel="private-py", socket_id=socket_id)
    report("subscribe_private", ack=subscribe({"channel": "private-py", **private}))
    presence = backend.authenticate(
        channel="presence-py",
        socket_id=socket_id,
        custom_data={"user_id": "py-user", "user_info": {"name": "Py"}},
    )
    report("subscribe_presence", ack=subscribe({"channel": "presence-py", **presence}))
    report(
        "subscribe_forged",
        ack=subscribe({"channel": "private-py2", "auth": f"{key}:{'0' * 64}"}),
    )

    report("trigger", result=backend.trigger(["py-public", "private-py"], "py-event", {"n": 1}))
    received = [next_event("py-event"), next_event("py-event")]
    report("events", events=sorted(received, key=lambda e: e[1][1]["channel"]))

    # The sender's own socket is excluded; the next event proves the first was skipped.
    backend.trigger("py-public", "excluded", {"n": 2}, socket_id=socket_id)
    backend.trigger("py-public", "after", {"n": 3})
    report("after_exclusion", event=next_event("after"))

    backend.trigger_batch(
        [
            {"channel": "py-public", "name": "batch-1", "data": "one"},
            {"channel": "py-public", "name": "batch-2", "data": json.dumps({"two": 2})},
        ]
    )
    report("batch", events=[next_event("batch-1"), next_event("batch-2")])

    report("channels_info", result=backend.channels_info(prefix_filter="py-"))
    report(
        "presence_channels_info",
        result=backend.channels_info(prefix_filter="presence-", attributes=["user_count"]),
    )
    report("channel_info", result=backend.channel_info("py-public", ["subscription_count"]))
    report("users_info", result=backend.users_info("presence-py"))

    wrong = pusher.Pusher(
        app_id=app_id, key=key, secret="not-the-secret", host=target.hostname, port=target.port, ssl=False
    )
    try:
        wrong.trigger("py-public", "forged", {})
        report("wrong_secret", error=None)
    except pusher.errors.PusherError as e:
        report("wrong_secret", error=type(e).__name__, message=str(e))

    report("transport", transport=sio.transport())
    sio.disconnect()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - every failure is reported to the test
        report("error", message=f"{type(e).__name__}: {e}", trace=traceback.format_exc())
        sys.exit(1)
