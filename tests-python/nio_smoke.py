#!/usr/bin/env python3
"""Drive a homeserver with matrix-nio, a real third-party client library.

Usage: nio_smoke.py HOMESERVER_URL USERNAME PASSWORD

Registers USERNAME (or, if it is taken, logs in), logs in again as a second device, sets a
display name, reads it back, checks whoami, and logs out. Prints one JSON line on stdout
describing the session ({"user_id", "device_id", "access_token", "displayname"}) so that a
caller can verify the server-side state; exits 0 on success, 1 with a message on stderr on
the first failure, 2 when matrix-nio is not installed.
"""

import asyncio
import json
import sys

try:
    from nio import (
        AsyncClient,
        LoginResponse,
        LogoutResponse,
        ProfileGetDisplayNameResponse,
        ProfileSetDisplayNameResponse,
        RegisterResponse,
        WhoamiResponse,
    )
except ImportError as e:  # pragma: no cover - exercised by the Rust test's message
    print(f"matrix-nio is not installed ({e}); run `pip install matrix-nio`", file=sys.stderr)
    sys.exit(2)


class SmokeFailure(Exception):
    pass


def expect(response, kind, step):
    """Returns response if it is a `kind`, else raises with what the server said."""
    if not isinstance(response, kind):
        details = getattr(response, "message", None) or response
        status = getattr(response, "status_code", None)
        raise SmokeFailure(f"{step} failed: {type(response).__name__} {status}: {details}")
    return response


async def smoke(homeserver, username, password):
    display_name = f"nio smoke {username} ✓"

    registrar = AsyncClient(homeserver, username)
    try:
        # nio's register() sends m.login.dummy auth directly (no session), as many bots do.
        resp = await registrar.register(username, password, device_name="nio-register")
        if isinstance(resp, RegisterResponse):
            user_id = resp.user_id
        elif getattr(resp, "status_code", None) == "M_USER_IN_USE":
            user_id = None
        else:
            expect(resp, RegisterResponse, "register")
    finally:
        await registrar.close()

    client = AsyncClient(homeserver, username)
    try:
        login = expect(await client.login(password, device_name="nio-smoke"), LoginResponse, "login")
        if user_id is not None and login.user_id != user_id:
            raise SmokeFailure(f"login returned {login.user_id}, register returned {user_id}")

        who = expect(await client.whoami(), WhoamiResponse, "whoami")
        if who.user_id != login.user_id or who.device_id != login.device_id:
            raise SmokeFailure(f"whoami says {who.user_id}/{who.device_id}, "
                               f"login said {login.user_id}/{login.device_id}")

        expect(await client.set_displayname(display_name), ProfileSetDisplayNameResponse,
               "set_displayname")
        got = expect(await client.get_displayname(), ProfileGetDisplayNameResponse,
                     "get_displayname")
        if got.displayname != display_name:
            raise SmokeFailure(f"get_displayname returned {got.displayname!r}, "
                               f"expected {display_name!r}")

        access_token = client.access_token
        expect(await client.logout(), LogoutResponse, "logout")
        return {
            "user_id": login.user_id,
            "device_id": login.device_id,
            "access_token": access_token,
            "displayname": display_name,
        }
    finally:
        await client.close()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 1
    homeserver, username, password = sys.argv[1:]
    try:
        result = asyncio.run(smoke(homeserver, username, password))
    except SmokeFailure as e:
        print(f"nio smoke test failed: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
