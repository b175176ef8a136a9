#!/usr/bin/env python3
"""Two matrix-nio clients talk through a homeserver's /sync.

Usage: nio_sync.py HOMESERVER_URL PASSWORD

Registers (or logs in) two users. Alice creates a room and invites Bob; Bob sees the invite in
his sync and joins; Alice sends a message and starts typing; Bob sees the message and the typing
notice in his sync and sends a read receipt; Alice sees the receipt in hers. Every wait is a
sync loop with a deadline. Prints one JSON line on success; exits 1 with a message on stderr
on the first failure, 2 when matrix-nio is not installed.
"""

import asyncio
import json
import sys
import time

try:
    from nio import (
        AsyncClient,
        JoinResponse,
        LoginResponse,
        ReceiptEvent,
        RegisterResponse,
        RoomCreateResponse,
        RoomMessageText,
        RoomSendResponse,
        RoomTypingResponse,
        SyncResponse,
        TypingNoticeEvent,
        UpdateReceiptMarkerResponse,
    )
except ImportError as e:  # pragma: no cover - exercised by the Rust test's message
    print(f"matrix-nio is not installed ({e}); run `pip install matrix-nio`", file=sys.stderr)
    sys.exit(2)

DEADLINE_SECS = 30


class SyncFailure(Exception):
    pass


def expect(response, kind, step):
    if not isinstance(response, kind):
        details = getattr(response, "message", None) or response
        raise SyncFailure(f"{step} failed: {type(response).__name__}: {details}")
    return response


async def session(homeserver, username, password):
    client = AsyncClient(homeserver, username)
    resp = await client.register(username, password, device_name=f"nio-{username}")
    if not isinstance(resp, RegisterResponse):
        expect(await client.login(password, device_name=f"nio-{username}"), LoginResponse,
               f"login {username}")
    return client


async def sync_until(client, what, found):
    """Syncs (long-polling) until found(response) returns something truthy, or fails."""
    deadline = time.monotonic() + DEADLINE_SECS
    while time.monotonic() < deadline:
        resp = expect(await client.sync(timeout=5000, since=client.next_batch), SyncResponse,
                      f"sync for {what}")
        result = found(resp)
        if result:
            return result
    raise SyncFailure(f"{client.user_id} never saw {what} within {DEADLINE_SECS} s")


def joined_events(resp, room_id, section):
    room = resp.rooms.join.get(room_id)
    if room is None:
        return []
    return room.timeline.events if section == "timeline" else room.ephemeral


async def run(homeserver, password):
    alice = await session(homeserver, "nio_alice", password)
    bob = await session(homeserver, "nio_bob", password)
    try:
        for client in (alice, bob):
            expect(await client.sync(timeout=0), SyncResponse, f"initial sync {client.user_id}")

        room = expect(await alice.room_create(name="nio sync", invite=[bob.user_id]),
                      RoomCreateResponse, "room_create")
        room_id = room.room_id
        await sync_until(bob, "the invite", lambda r: room_id in r.rooms.invite)
        expect(await bob.join(room_id), JoinResponse, "join")
        await sync_until(bob, "the joined room", lambda r: room_id in r.rooms.join)

        sent = expect(await alice.room_send(room_id, "m.room.message",
                                            {"msgtype": "m.text", "body": "hello from nio"}),
                      RoomSendResponse, "room_send")
        expect(await alice.room_typing(room_id, True, 30000), RoomTypingResponse, "room_typing")

        seen = {"message": False, "typing": False}

        def message_and_typing(resp):
            for event in joined_events(resp, room_id, "timeline"):
                if isinstance(event, RoomMessageText) and event.body == "hello from nio":
                    if event.event_id != sent.event_id:
                        raise SyncFailure(f"message arrived as {event.event_id}, "
                                          f"sent as {sent.event_id}")
                    seen["message"] = True
            for event in joined_events(resp, room_id, "ephemeral"):
                if isinstance(event, TypingNoticeEvent) and alice.user_id in event.users:
                    seen["typing"] = True
            return seen["message"] and seen["typing"]

        await sync_until(bob, "alice's message and typing notice", message_and_typing)

        expect(await bob.update_receipt_marker(room_id, sent.event_id), UpdateReceiptMarkerResponse,
               "update_receipt_marker")

        def receipt(resp):
            for event in joined_events(resp, room_id, "ephemeral"):
                if isinstance(event, ReceiptEvent):
                    for r in event.receipts:
                        if r.user_id == bob.user_id and r.event_id == sent.event_id:
                            return True
            return False

        await sync_until(alice, "bob's read receipt", receipt)
        return {"room_id": room_id, "event_id": sent.event_id}
    finally:
        await alice.close()
        await bob.close()


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 1
    homeserver, password = sys.argv[1:]
    try:
        result = asyncio.run(run(homeserver, password))
    except SyncFailure as e:
        print(f"nio sync test failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
