"""The optional third layer: a guard model behind an OpenAI-compatible endpoint.

Two API shapes:

- ``api: chat`` -- ``POST {url}/chat/completions``. With ``prompt: policy`` (default) the user message is a
  Llama Guard-style task prompt listing *our* categories as S1..S6; the model answers ``safe`` or
  ``unsafe`` and, on a second line, the violated codes (``S1,S4``). With ``prompt: server_template`` the
  text is sent as the user message as it is, for servers that apply Llama Guard's own chat template; the
  answer's codes are then read in the Llama Guard 3 taxonomy (S1 violent crimes ... S14).
- ``api: moderations`` -- ``POST {url}/moderations`` with ``{"model", "input"}``; the answer's
  ``results[0].flagged`` and ``categories`` (``sexual/minors``, ``hate/threatening``, ``self-harm/intent``...)
  are mapped onto our categories.

The API key is read from the environment variable named in ``api_key_env`` and never logged or stored.
When the endpoint fails, ``on_error: block`` (default) fails closed and names ``guard_unavailable``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

OUR_CODES = {
    "S1": ("minors", "sexual content involving minors, or minors in any sexual or suggestive context"),
    "S2": ("sexual", "sexual content, nudity, sexual acts, sexual violence"),
    "S3": ("real_people", "sexualised, degrading or misleading depictions of real, identifiable people"),
    "S4": ("hate", "hate: slurs, hate symbols, groups depicted as animals, vermin or monsters, "
                   "dehumanising caricature tropes"),
    "S5": ("violence", "graphic violence and gore"),
    "S6": ("self_harm", "suicide, self-harm, eating disorders"),
}
LLAMA_GUARD_3 = {"S1": "violence", "S2": "crime", "S3": "sexual", "S4": "minors", "S5": "real_people",
                 "S6": "specialized_advice", "S7": "real_people", "S8": "intellectual_property", "S9": "violence",
                 "S10": "hate", "S11": "self_harm", "S12": "sexual", "S13": "elections", "S14": "code_abuse"}
MODERATIONS = [("sexual/minors", "minors"), ("sexual", "sexual"), ("hate", "hate"), ("harassment", "hate"),
               ("violence", "violence"), ("self-harm", "self_harm"), ("illicit", "illicit")]


@dataclass
class GuardSettings:
    url: str
    api: Literal["chat", "moderations"] = "chat"
    model: str = "llama-guard"
    prompt: Literal["policy", "server_template"] = "policy"
    api_key_env: str | None = None
    timeout: float = 10.0
    on_error: Literal["block", "allow"] = "block"


@dataclass
class GuardVerdict:
    flagged: bool
    category: str = ""
    rule: str = ""
    detail: str = ""


def policy_prompt(text: str) -> str:
    cats = "\n".join(f"{code}: {desc}." for code, (_, desc) in OUR_CODES.items())
    return (
        "Task: Check if there is unsafe content in the 'User' message below, a request for an image or a text "
        "to publish, according to our safety policy with the categories below.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{cats}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\nUser: {text}\n\n<END CONVERSATION>\n\n"
        "Provide your safety assessment for the User message above:\n"
        "- First line must read 'safe' or 'unsafe'.\n"
        "- If unsafe, a second line must include a comma-separated list of violated categories.")


def parse_guard_answer(answer: str, codes: dict[str, str]) -> GuardVerdict:
    lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
    if not lines or lines[0].lower() not in ("safe", "unsafe"):
        raise ValueError(f"guard answer is neither 'safe' nor 'unsafe': {answer[:80]!r}")
    if lines[0].lower() == "safe":
        return GuardVerdict(False)
    found = re.findall(r"S\d+", " ".join(lines[1:]).upper())
    cats = [codes.get(c, "guard") for c in found] or ["guard"]
    return GuardVerdict(True, cats[0], "guard_" + (found[0] if found else "unsafe"),
                        "guard model: unsafe " + ",".join(found))


class GuardClient:
    def __init__(self, settings: GuardSettings, session=None):
        import requests

        self.settings = settings
        self.session = session or requests.Session()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        env = self.settings.api_key_env
        if env and os.environ.get(env):
            headers["Authorization"] = f"Bearer {os.environ[env]}"
        return headers

    def _post(self, path: str, body: dict) -> dict:
        url = self.settings.url.rstrip("/") + path
        resp = self.session.post(url, json=body, headers=self._headers(), timeout=self.settings.timeout)
        if resp.status_code != 200:
            raise RuntimeError(f"guard endpoint {url} answered HTTP {resp.status_code}")
        return resp.json()

    def check(self, text: str) -> GuardVerdict:
        s = self.settings
        try:
            if s.api == "moderations":
                data = self._post("/moderations", {"model": s.model, "input": text})
                result = data["results"][0]
                if not result.get("flagged"):
                    return GuardVerdict(False)
                flagged = [k for k, v in (result.get("categories") or {}).items() if v]
                for prefix, ours in MODERATIONS:
                    hit = next((k for k in flagged if k == prefix or k.startswith(prefix + "/")), None)
                    if hit:
                        return GuardVerdict(True, ours, f"guard_{hit}", f"moderation endpoint flagged {hit}")
                return GuardVerdict(True, "guard", "guard_flagged", "moderation endpoint flagged the text")
            content = policy_prompt(text) if s.prompt == "policy" else text
            data = self._post("/chat/completions", {
                "model": s.model, "messages": [{"role": "user", "content": content}],
                "temperature": 0, "max_tokens": 20})
            answer = data["choices"][0]["message"]["content"] or ""
            codes = {k: v[0] for k, v in OUR_CODES.items()} if s.prompt == "policy" else LLAMA_GUARD_3
            return parse_guard_answer(answer, codes)
        except Exception as exc:  # network, HTTP status, malformed answer: never a traceback to the caller
            reason = f"guard model unavailable ({type(exc).__name__}: {str(exc)[:120]})"
            if s.on_error == "block":
                return GuardVerdict(True, "guard_unavailable", "guard_unavailable", reason)
            return GuardVerdict(False, detail=reason)
