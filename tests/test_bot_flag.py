"""Bots flagged when they arrive: the User-Agent rule, and the exposure row the real app stores.

Both ways into an assignment are checked (the ASGI fast path and the FastAPI routes it shadows),
each for the assignment and the content endpoint: a Googlebot visitor's first exposure carries
``"bot": true`` in its properties, a Chrome visitor's does not.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from armor_ab.bots import is_bot
from armor_ab.experiments.assignment import Assigner
from armor_ab.experiments.loader import load_experiment_file
from tests.helpers.platform import DEMO_EXPERIMENT, seed_database

EXP = "catalog-interleaved"

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")

BOTS = [
    GOOGLEBOT,
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.155 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)",
    "Mozilla/5.0 (compatible;PetalBot;+https://webmaster.petalsearch.com/site/petalbot)",
    "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 "
    "(compatible; Bytespider; spider-feedback@bytedance.com)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    "CCBot/2.0 (https://commoncrawl.org/faq/)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
    "python-requests/2.31.0",
    "curl/8.4.0",
    "Wget/1.21.4",
    "Go-http-client/1.1",
    "Mozilla/5.0 (compatible; Applebot/0.1; +http://www.apple.com/go/applebot)",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; archive.org_bot +http://archive.org/details/archive.org_bot)",
    "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)",
    "Screaming Frog SEO Spider/19.4",
    "my-crawler",
]

HUMANS = [
    CHROME,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Mobile Safari/537.36",
    # Cubot phones: "bot" at the end of a brand name, followed by a separator.
    "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 9; cubot note 20 Build/PPR1) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/110.0.0.0 Mobile Safari/537.36",
    # "bot" inside longer words.
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AbbottLabsKiosk/3.2 Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) Bottlerocket/1.0 Firefox/125.0",
    "",
    None,
]


@pytest.mark.parametrize("user_agent", BOTS)
def test_known_bots_are_flagged(user_agent: str) -> None:
    assert is_bot(user_agent)
    assert is_bot(user_agent.upper())  # case does not matter


@pytest.mark.parametrize("user_agent", HUMANS)
def test_browsers_are_not_flagged(user_agent: str | None) -> None:
    assert not is_bot(user_agent)


def test_the_stored_exposure_carries_the_flag(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from armor_ab.api.app import create_app
    from armor_ab.services.state import ServerSettings

    db = tmp_path / "bots.duckdb"
    keys = seed_database(db)
    auth = {"Authorization": f"Bearer {keys['client']}"}
    users: dict[str, bool] = {}  # user id -> whether its User-Agent is a bot
    for fast in (True, False):
        with TestClient(create_app(ServerSettings(db_path=db, fast_path=fast))) as client:
            for endpoint in ("assignment", "content"):
                for agent, bot in ((GOOGLEBOT, True), (CHROME, False)):
                    user = f"{'fast' if fast else 'fastapi'}-{endpoint}-{'bot' if bot else 'human'}"
                    r = client.get(f"/v1/experiments/{EXP}/{endpoint}", params={"user_id": user, "item_id": "pumps-01"},
                                   headers={**auth, "User-Agent": agent})
                    assert r.status_code == 200, r.text
                    assert r.json()["in_experiment"] is True
                    users[user] = bot
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = dict(con.execute(
            "SELECT user_id, properties::VARCHAR FROM events WHERE type = 'exposure' AND experiment = ?", [EXP]
        ).fetchall())
    finally:
        con.close()
    assert set(rows) == set(users)
    for user, bot in users.items():
        props = json.loads(rows[user] or "{}")
        assert props.get("bot") is (True if bot else None), (user, props)
        assert props.get("device") == "desktop"  # the other properties are still there


def test_exposures_posted_by_a_bot_are_flagged_too(tmp_path) -> None:
    """The snippet also posts the visitor's exposure in its event batches (same id as the server's):
    whichever copy is stored first, a bot's carries the flag. Other events and humans are untouched."""
    import uuid

    from fastapi.testclient import TestClient

    from armor_ab.api.app import create_app
    from armor_ab.services.state import ServerSettings

    db = tmp_path / "bots-events.duckdb"
    keys = seed_database(db)
    auth = {"Authorization": f"Bearer {keys['client']}"}
    sent: dict[str, bool] = {}
    assigner = Assigner.from_experiment(load_experiment_file(DEMO_EXPERIMENT))  # events name the assigned variant
    for fast in (True, False):
        with TestClient(create_app(ServerSettings(db_path=db, fast_path=fast))) as client:
            for agent, bot in ((GOOGLEBOT, True), (CHROME, False)):
                user = f"{'fast' if fast else 'fastapi'}-{'bot' if bot else 'human'}"
                variant = assigner.assign(user).variant
                events = [
                    {"event_id": str(uuid.uuid4()), "experiment": EXP, "variant": variant, "user_id": user,
                     "item_id": "pumps-01", "type": "exposure", "properties": {"device": "desktop"}},
                    {"event_id": str(uuid.uuid4()), "experiment": EXP, "variant": variant, "user_id": user,
                     "item_id": "pumps-01", "type": "page_view"},
                ]
                r = client.post("/v1/events", json={"events": events}, headers={**auth, "User-Agent": agent})
                assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
                sent[user] = bot
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT user_id, type, properties::VARCHAR FROM events WHERE experiment = ?",
                           [EXP]).fetchall()
    finally:
        con.close()
    for user, kind, props in rows:
        if user not in sent:
            continue
        got = json.loads(props or "{}")
        if kind == "exposure":
            assert got.get("bot") is (True if sent[user] else None), (user, got)
            assert got["device"] == "desktop"
        else:
            assert "bot" not in got
