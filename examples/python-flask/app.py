"""A web app that signs its users in with passgate, in Python and Flask.

The whole integration is in this file, in the order a user meets it:

  GET  /          a form asking for an email address
  POST /login     asks passgate to email a link (with a PKCE challenge),
                  keeps the PKCE verifier in an HttpOnly cookie
  GET  /callback  where the email's link points: a page with a button,
                  and nothing else (it never calls passgate)
  POST /callback  that button: verifies the link's token with passgate,
                  checks the JWT, starts this app's own session
  POST /code      the same with the 6-digit code from the email, for a
                  user who reads the email on another device
  GET  /me        who is signed in (401 when nobody is)
  POST /logout    ends this app's session

docs/integrate.md explains each step. Configuration comes from the
environment only; see README.md beside this file.
"""

import base64
import hashlib
import os
import re
import secrets
import sys
from datetime import datetime, timedelta, timezone

import jwt  # PyJWT, with the `crypto` extra for EdDSA
import requests
from flask import Flask, redirect, render_template_string, request, session

# ---- configuration ------------------------------------------------------------


def required(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"error: {name} is required (see README.md)")
    return value


# Where this app reaches passgate (server to server).
PASSGATE_URL = required("PASSGATE_URL").rstrip("/")
# The project's secret key (sk_live_… or sk_test_…). Never sent to a browser.
PASSGATE_API_KEY = required("PASSGATE_API_KEY")
# The project id (prj_…): every JWT passgate signs for this project has it as `aud`.
PASSGATE_PROJECT_ID = required("PASSGATE_PROJECT_ID")
# passgate's public URL, the JWT's `iss` (PASSGATE_PUBLIC_URL on the server).
# The same as PASSGATE_URL unless the app reaches passgate by another address.
PASSGATE_ISSUER = (os.environ.get("PASSGATE_ISSUER") or PASSGATE_URL).rstrip("/")
# Signs this app's own session cookie (Flask's session).
SESSION_SECRET = required("SESSION_SECRET")
if len(SESSION_SECRET) < 32:
    sys.exit("error: SESSION_SECRET must be at least 32 characters")
HOST = os.environ.get("HOST") or "127.0.0.1"
PORT = int(os.environ.get("PORT") or "5000")
# The URL browsers use for this app; the email's link points under it. When
# unset it is http://HOST:PORT, with the port actually bound (PORT=0 works
# when this file is run directly). Set it under gunicorn or behind a proxy.
APP_BASE_URL = (os.environ.get("APP_BASE_URL") or "").rstrip("/")

app = Flask(__name__)
app.config.update(
    SECRET_KEY=SESSION_SECRET,
    APP_BASE_URL=APP_BASE_URL or f"http://{HOST}:{PORT}",
    # Flask's session is a signed cookie; its age is checked on the server
    # too, not only by the browser's Max-Age.
    PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
    MAX_CONTENT_LENGTH=4096,
)
# request.remote_addr is the socket's address. Behind a reverse proxy, wrap
# the app in werkzeug's ProxyFix so it is the user's.

# ---- talking to passgate ------------------------------------------------------

http = requests.Session()
http.headers["Authorization"] = f"Bearer {PASSGATE_API_KEY}"


def passgate(path, body):
    """POSTs JSON to passgate with the project's key; returns the status and
    the parsed body (a problem document with a stable `code` when it failed)."""
    response = http.post(f"{PASSGATE_URL}{path}", json=body, timeout=10)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {}


# The public keys that sign passgate's JWTs. PyJWKClient caches them and
# fetches them again when a JWT names a key it does not have (after a rotation).
jwks = jwt.PyJWKClient(f"{PASSGATE_URL}/.well-known/jwks.json", cache_jwk_set=True, lifespan=300, timeout=10)


def check_jwt(token):
    """Checks the JWT that verify returned. The answer came straight from
    passgate over the connection this app opened, so this is a second lock,
    not the first: it proves the answer was signed by passgate's key, for this
    project (`aud`), by the passgate this app trusts (`iss`), and is fresh
    (`exp`). Only EdDSA is accepted, so a token cannot choose a weaker
    algorithm for itself."""
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA"],
        audience=PASSGATE_PROJECT_ID,
        issuer=PASSGATE_ISSUER,
        leeway=10,
        options={"require": ["iss", "aud", "sub", "email", "exp", "iat"]},
    )
    if claims.get("email_verified") is not True:
        raise jwt.InvalidTokenError("email_verified is not true")
    return claims


# ---- PKCE -------------------------------------------------------------------------


def new_pkce():
    """The verifier is a secret only this browser holds (in a cookie); passgate
    gets its SHA-256 at start and the verifier itself at verify. A link opened
    anywhere else (a mail scanner, another browser, someone who intercepted the
    email) cannot be verified, and trying does not use it up."""
    verifier = secrets.token_urlsafe(32)  # 43 characters
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


# ---- cookies ------------------------------------------------------------------------

LOGIN_COOKIES = ("pg_verifier", "pg_login_id")


def cookie_options(max_age=None):
    # HttpOnly: page scripts never see them. SameSite=Lax: sent when the user
    # follows the email's link (a top-level GET) and with the interstitial's
    # own POST, but not with a POST from another site, so another site cannot
    # complete a login in this browser.
    secure = app.config["APP_BASE_URL"].startswith("https://")
    return {"httponly": True, "samesite": "Lax", "secure": secure, "path": "/", "max_age": max_age}


def start_session(claims):
    session.clear()
    session.permanent = True
    session["user"] = {"sub": claims["sub"], "email": claims["email"]}


# ---- pages --------------------------------------------------------------------------

# render_template_string escapes every {{ value }}.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title></head>
<body><h1>{{ title }}</h1>
{% if message %}<p>{{ message }}</p>{% endif %}
{% if user %}<p>You are signed in as {{ user.email }}. <a href="/me">Your account</a></p>{% endif %}
{% if show == "email" %}
<form method="post" action="/login">
  <label>Email <input type="email" name="email" required autofocus></label>
  <button type="submit">Email me a sign-in link</button>
</form>
{% elif show == "sent" %}
<p>We sent a sign-in link to {{ email }}. Open it in this browser.</p>
{% elif show == "interstitial" %}
<form method="post" action="/callback">
  <input type="hidden" name="token" value="{{ token }}">
  <button type="submit">Continue signing in</button>
</form>
{% elif show == "me" %}
<p>Signed in as <strong>{{ user.email }}</strong>.</p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>
{% elif show == "again" %}
<p><a href="/">Sign in</a></p>
{% endif %}
{% if code_form %}
<p>Reading the email on another device? Enter its code here instead:</p>
<form method="post" action="/code">
  <input name="code" inputmode="numeric" autocomplete="one-time-code" required>
  <button type="submit">Sign in with the code</button>
</form>
{% endif %}
</body></html>"""


def page(title, status=200, **context):
    context.setdefault("user", None)
    return render_template_string(PAGE, title=title, **context), status


# What to tell a person for each error code passgate documents (docs/api.md).
REASONS = {
    "token_used": "This link was already used. Ask for a new one.",
    "token_expired": "This link has expired. Ask for a new one.",
    "token_burned": "This link was blocked after too many failed attempts. Ask for a new one.",
    "token_invalid": "This link is not valid. Ask for a new one.",
    "invalid_token_format": "This link is not valid. Ask for a new one.",
    "code_verifier_mismatch": "Open the link in the browser where you asked for it, or type the code from the email there.",
    "code_invalid": "That code is not right.",
    "rate_limited": "Too many attempts. Wait a little and try again.",
}


def status_for(passgate_status):
    """passgate's 4xx are the user's problem (a used or foreign link); a 5xx
    or anything unexpected is ours (502: the upstream failed)."""
    return passgate_status if passgate_status in (400, 401, 429) else 502


@app.after_request
def no_store(response):
    # Pages here carry tokens and personal data: never cached.
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- the app ------------------------------------------------------------------------


@app.get("/")
def home():
    return page("Sign in", show="email", user=session.get("user"))


@app.post("/login")
def login():
    email = request.form.get("email", "").strip()
    verifier, challenge = new_pkce()
    body = {
        "email": email,
        "validationUrl": f"{app.config['APP_BASE_URL']}/callback",
        "codeChallenge": challenge,
        # A 6-digit code in the email too, for the user on another device.
        "includeCode": True,
        "userAgent": re.sub(r"[\x00-\x1f\x7f]", "", request.headers.get("User-Agent", ""))[:512],
    }
    if request.remote_addr:
        # Turns on passgate's per-IP send limit for this user.
        body["ipAddress"] = request.remote_addr
    status, started = passgate("/api/v2/auth/start", body)
    if status != 202:
        reasons = {
            "invalid_email": "That does not look like an email address.",
            "email_not_allowed": "This address may not sign in here.",
            "rate_limited": REASONS["rate_limited"],
        }
        message = reasons.get(started.get("code"), "Something went wrong. Try again.")
        return page("Sign in", status_for(status), show="email", message=message)
    # The cookies live as long as the link does.
    expires_at = datetime.fromisoformat(started["expiresAt"].replace("Z", "+00:00"))
    max_age = max(0, int((expires_at - datetime.now(timezone.utc)).total_seconds()))
    response = app.make_response(page("Check your email", show="sent", email=email, code_form=True))
    response.set_cookie("pg_verifier", verifier, **cookie_options(max_age))
    response.set_cookie("pg_login_id", started["loginId"], **cookie_options(max_age))
    return response


@app.get("/callback")
def callback_page():
    """The email's link lands here. Mail scanners and link previewers fetch
    links too, so a GET only shows a button; the token is used when a person
    presses it. No call to passgate happens here."""
    token = request.args.get("token", "")
    if not token:
        response = app.make_response(page("Sign in", 400, message="This sign-in link is incomplete.", show="again"))
    else:
        response = app.make_response(page("Continue signing in", show="interstitial", token=token))
    # The token is in this page's URL: keep it out of Referer headers.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@app.post("/callback")
def callback_submit():
    verifier = request.cookies.get("pg_verifier")
    if not verifier:
        # Not the browser that asked for the link (or its cookie expired).
        # Calling verify without the verifier would only count a failed
        # attempt against the login, so do not.
        return page("Could not sign you in", 400, message=REASONS["code_verifier_mismatch"])
    token = request.form.get("token", "")
    status, verified = passgate("/api/v2/auth/verify", {"token": token, "codeVerifier": verifier})
    return finish_sign_in(status, verified)


@app.post("/code")
def code_submit():
    verifier = request.cookies.get("pg_verifier")
    login_id = request.cookies.get("pg_login_id")
    if not verifier or not login_id:
        return page("Could not sign you in", 400, message="Start again from the sign-in page.", show="again")
    code = request.form.get("code", "")
    status, verified = passgate("/api/v2/auth/verify", {"loginId": login_id, "code": code, "codeVerifier": verifier})
    if verified.get("code") in ("code_invalid", "invalid_request"):
        return page("Check your email", 401, message=REASONS["code_invalid"], code_form=True)
    return finish_sign_in(status, verified)


def finish_sign_in(status, verified):
    """After verify: check the JWT, then replace passgate's answer with this
    app's own session. passgate's JWT lives 5 minutes and is not a session."""
    if status != 200:
        reason = REASONS.get(verified.get("code"), "Something went wrong. Try again.")
        return page("Could not sign you in", status_for(status), message=reason)
    try:
        claims = check_jwt(verified["jwt"])
    except (jwt.PyJWTError, KeyError) as error:
        # Misconfiguration (PASSGATE_PROJECT_ID, PASSGATE_ISSUER) or a forged
        # answer: either way, nobody is signed in.
        print(f"the JWT from passgate did not check out: {type(error).__name__}", file=sys.stderr, flush=True)
        return page("Could not sign you in", 502, message="Something went wrong. Try again.")
    start_session(claims)
    # 303: the browser GETs /me, so reloading it does not post the token again.
    response = redirect("/me", 303)
    for name in LOGIN_COOKIES:
        response.delete_cookie(name, path="/", httponly=True, samesite="Lax")
    return response


@app.get("/me")
def me():
    user = session.get("user")
    if not user:
        return page("Not signed in", 401, show="again")
    return page("Your account", show="me", user=user)


@app.post("/logout")
def logout():
    session.clear()
    return redirect("/", 303)


@app.errorhandler(requests.RequestException)
def passgate_unreachable(error):
    # passgate unreachable or too slow: a plain page, no details.
    print(f"request to passgate failed: {type(error).__name__}", file=sys.stderr, flush=True)
    return page("Something went wrong", 502, message="Try again in a moment.")


def serve():
    """Werkzeug's server, enough for this example; in production run the app
    under a WSGI server (gunicorn 'app:app') with APP_BASE_URL set."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class PathOnlyLog(WSGIRequestHandler):
        # The callback's query string holds the login token, and a request
        # log is no place for it: log the path only.
        def log_request(self, code="-", size="-"):
            code = getattr(code, "value", code)
            path = self.path.split("?", 1)[0]
            print(f"{self.command} {path} {code}", file=sys.stderr, flush=True)

    server = make_server(HOST, PORT, app, threaded=True, request_handler=PathOnlyLog)
    if not APP_BASE_URL:
        app.config["APP_BASE_URL"] = f"http://{HOST}:{server.server_port}"
    print(f"listening on http://{HOST}:{server.server_port} (public URL {app.config['APP_BASE_URL']})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve()
