"""The built-in task suites, generated offline from a seed at any context size.

Each generator takes ``(seed, size, index)`` and returns one :class:`~.tasks.Task` whose
context is ``size`` tokens long (4 characters per token) to within one line or record:

- ``niah``: one access code hidden in filler, beside distractor codes of vaults with
  similar names (S-NIAH with distractors); scored exact, a distractor's code scores 0;
- ``multi``: every item one expedition packed, scattered among other expeditions' items
  (multi-needle); set F1, so finding some items earns partial credit;
- ``aggregate``: customer messages whose topic is never written and must be inferred
  from the wording; "how many are about X" (OOLONG style: a model has to read every
  record); partial credit 0.75^|error| as in OOLONG;
- ``pairs``: the same kind of messages with users and cities; every pair of users in one
  city who both wrote about X (quadratic, OOLONG-Pairs style); pair-set F1;
- ``codeqa``: a generated Python repository (one document per file); which function
  calls a given function (distractors mention it, or call a look-alike), or what a
  setting ends up as after modules load in order and overrides apply.

User suites come from JSONL files (:mod:`.user_suite`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from rlm_engine.evals.filler import filler_line, hide
from rlm_engine.evals.tasks import CHARS_PER_TOKEN, Task, rng_for

Generator = Callable[[int, int, int], Task]

_COLORS = [
    "amber",
    "azure",
    "crimson",
    "ivory",
    "jade",
    "cobalt",
    "scarlet",
    "ochre",
    "teal",
    "violet",
    "copper",
    "indigo",
    "olive",
    "coral",
    "slate",
    "saffron",
]
_ANIMALS = [
    "falcon",
    "heron",
    "otter",
    "lynx",
    "badger",
    "raven",
    "marten",
    "ibis",
    "bison",
    "gecko",
    "walrus",
    "puffin",
    "jackal",
    "mantis",
    "osprey",
    "newt",
]
_ITEMS = [
    "compass",
    "lantern",
    "rope",
    "tarp",
    "kettle",
    "hatchet",
    "sextant",
    "canteen",
    "blanket",
    "whistle",
    "telescope",
    "chisel",
    "shovel",
    "hammock",
    "harmonica",
    "notebook",
    "flare",
    "barometer",
    "kayak",
    "paddle",
    "snowshoe",
    "thermos",
    "binoculars",
    "saw",
    "crampon",
    "tent",
    "stove",
    "sled",
    "map",
    "flint",
]


def _key(rng: random.Random) -> tuple[str, str]:
    return rng.choice(_COLORS), rng.choice(_ANIMALS)


def _codes(rng: random.Random, n: int) -> list[str]:
    return [str(c) for c in rng.sample(range(100_000, 1_000_000), n)]


# --------------------------------------------------------------------------- niah


def niah(seed: int, size: int, index: int) -> Task:
    """One access code among filler and four distractor vaults of similar names."""
    rng = rng_for("niah", seed, size, index)
    color, animal = _key(rng)
    others = [c for c in _COLORS if c != color]
    beasts = [a for a in _ANIMALS if a != animal]
    keys = [f"{color}-{animal}"]
    keys += [f"{color}-{a}" for a in rng.sample(beasts, 2)]
    keys += [f"{c}-{animal}" for c in rng.sample(others, 2)]
    codes = _codes(rng, len(keys))
    lines = [
        f"Security log: the access code for the {k} vault is {c}."
        for k, c in zip(keys, codes, strict=True)
    ]
    query = f"What is the access code for the {keys[0]} vault? Reply with the code only."
    context = hide(rng, size * CHARS_PER_TOKEN, lines)
    return Task(
        "niah",
        size,
        index,
        seed,
        context,
        query,
        codes[0],
        "needle",
        {"distractors": codes[1:]},
    )


# --------------------------------------------------------------------------- multi


def multi(seed: int, size: int, index: int) -> Task:
    """Every item one expedition packed (5), among other expeditions' items (6)."""
    rng = rng_for("multi", seed, size, index)
    names = [
        f"{c}-{a}" for c, a in zip(rng.sample(_COLORS, 4), rng.sample(_ANIMALS, 4), strict=True)
    ]
    items = rng.sample(_ITEMS, 11)
    mine, theirs = items[:5], items[5:]
    lines = [f"Field notes: the {names[0]} expedition packed a {item}." for item in mine]
    lines += [f"Field notes: the {rng.choice(names[1:])} expedition packed a {i}." for i in theirs]
    query = (
        f"List every item the {names[0]} expedition packed. "
        "Reply with the items separated by commas."
    )
    context = hide(rng, size * CHARS_PER_TOKEN, lines)
    return Task(
        "multi",
        size,
        index,
        seed,
        context,
        query,
        ", ".join(mine),
        "list_f1",
        {"items": mine, "distractors": theirs},
    )


# --------------------------------------------------------------------------- messages

TOPICS = ("billing", "shipping", "technical", "praise")
#: How each topic is said without being named: a reader has to infer the label.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for the {thing} this month and want a refund.",
        "My invoice for the {thing} shows a payment I never made.",
        "Why is my bill for the {thing} higher than the price you advertised?",
    ),
    "shipping": (
        "My parcel with the {thing} still has not arrived after two weeks.",
        "The courier left the {thing} at the wrong address, yet tracking says it came.",
        "Can you tell me when the delivery of my {thing} will reach me?",
    ),
    "technical": (
        "The {thing} app crashes every time I open the settings page.",
        "I get an error code when I try to log in to the {thing} portal.",
        "After the update the {thing} freezes and will not load my files.",
    ),
    "praise": (
        "Thank you, the {thing} works wonderfully and setup took minutes.",
        "I love the new {thing}; great job to the whole team.",
        "Fantastic support today, the {thing} is exactly what I needed.",
    ),
}
_THINGS = [
    "router",
    "blender",
    "headphones",
    "desk",
    "lamp",
    "kettle",
    "scooter",
    "camera",
    "speaker",
    "printer",
    "tablet",
    "smartwatch",
    "toaster",
]
_CITIES = [
    "Lisbon",
    "Oslo",
    "Quito",
    "Hanoi",
    "Dakar",
    "Perth",
    "Lima",
    "Riga",
    "Turin",
    "Cusco",
    "Nairobi",
    "Tallinn",
    "Lyon",
    "Kyoto",
]
_TOPIC_NOTE = (
    "Each line below is a customer message. Its topic (billing, shipping, technical or "
    "praise) is not written in it and must be inferred from what it says."
)


def _message(rng: random.Random, topic: str) -> str:
    return rng.choice(_TEMPLATES[topic]).format(thing=rng.choice(_THINGS))


def aggregate(seed: int, size: int, index: int) -> Task:
    """How many messages are about one topic; topics are never named in the messages."""
    rng = rng_for("aggregate", seed, size, index)
    target = TOPICS[index % len(TOPICS)]
    weights = [rng.uniform(0.5, 2.0) for _ in TOPICS]
    budget = size * CHARS_PER_TOKEN
    lines: list[str] = []
    used, count = 0, 0
    while True:
        topic = rng.choices(TOPICS, weights)[0]
        uid = rng.randrange(10_000, 100_000)
        line = f"Message {len(lines) + 1:06d} from user {uid}: {_message(rng, topic)}"
        if used + len(line) + 1 > budget and lines:
            break
        lines.append(line)
        used += len(line) + 1
        count += topic == target
    query = f"{_TOPIC_NOTE} How many messages are about {target}? Reply with a number."
    return Task(
        "aggregate",
        size,
        index,
        seed,
        "\n".join(lines) + "\n",
        query,
        str(count),
        "number",
        {"topic": target},
    )


def pairs(seed: int, size: int, index: int) -> Task:
    """Every pair of users in one city who both wrote about the topic (12 such users over
    4 cities, every other message on another topic)."""
    rng = rng_for("pairs", seed, size, index)
    target = TOPICS[index % len(TOPICS)]
    others = [t for t in TOPICS if t != target]
    cities = rng.sample(_CITIES, 4)
    ids = rng.sample(range(1_000, 10_000), 12)  # 4 digits; other users have 5
    chosen = [(uid, rng.choice(cities)) for uid in ids]
    budget = size * CHARS_PER_TOKEN
    lines: list[str] = []
    used = 0
    for uid, city in chosen:
        line = f"from user {uid} ({city}): {_message(rng, target)}"
        lines.append(line)
        used += len(line) + 16
    while True:
        line = (
            f"from user {rng.randrange(10_000, 100_000)} ({rng.choice(_CITIES)}): "
            f"{_message(rng, rng.choice(others))}"
        )
        if used + len(line) + 16 > budget:
            break
        lines.insert(rng.randrange(len(lines) + 1), line)
        used += len(line) + 16
    lines = [f"Message {i:06d} {line}" for i, line in enumerate(lines, 1)]
    found = sorted(
        f"{min(a, b)}-{max(a, b)}"
        for i, (a, ca) in enumerate(chosen)
        for b, cb in chosen[i + 1 :]
        if ca == cb
    )
    query = (
        f"{_TOPIC_NOTE} List every pair of users who live in the same city and who both "
        f"wrote about {target}. Reply with the pairs as ID-ID (smaller ID first), separated "
        "by commas."
    )
    return Task(
        "pairs",
        size,
        index,
        seed,
        "\n".join(lines) + "\n",
        query,
        ", ".join(found),
        "pairs_f1",
        {"items": found, "topic": target},
    )


# --------------------------------------------------------------------------- codeqa

_VERBS = [
    "load",
    "save",
    "render",
    "parse",
    "validate",
    "send",
    "fetch",
    "build",
    "merge",
    "sync",
    "export",
    "compute",
]
_NOUNS = [
    "invoice",
    "user",
    "order",
    "report",
    "session",
    "cart",
    "ticket",
    "profile",
    "ledger",
    "payload",
    "address",
    "coupon",
    "receipt",
    "batch",
    "schedule",
]
_SETTINGS = [
    "RETRY_LIMIT",
    "CACHE_TTL",
    "MAX_WORKERS",
    "BATCH_SIZE",
    "POOL_SIZE",
    "QUEUE_DEPTH",
    "PAGE_SIZE",
    "SYNC_INTERVAL",
]


def _function(name: str, callee: str, doc: str) -> str:
    return f'def {name}(item):\n    """{doc}"""\n    value = {callee}(item)\n    return value\n'


def _file(path: str, body: str) -> str:
    return f"--- file: {path} ---\n{body}"


def codeqa(seed: int, size: int, index: int) -> Task:
    """A generated repository: even tasks ask who calls a function, odd ones what a
    setting ends up as."""
    rng = rng_for("codeqa", seed, size, index)
    budget = size * CHARS_PER_TOKEN
    names: list[str] = []
    n = 0
    while len(names) < 6 or n < budget // 110:  # ~110 characters per function
        names.append(f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}_{n}")
        n += 1
    target, caller, mention, lookalike = names[0], names[1], names[2], names[3]
    setting = rng.choice(_SETTINGS)
    default, override, stale = rng.sample(range(2, 500), 3)
    special = {
        caller: _function(caller, target, "Prepares the item."),
        mention: _function(mention, names[4], f"Unlike {target}, this keeps the draft."),
        lookalike: _function(lookalike, f"{target}_v2", "Uses the newer path."),
    }
    plain_pool = names[4:]
    files: list[str] = []
    defaults = (
        f"{setting} = {default}\n{setting}_BACKUP = {stale}\n"
        f"# {setting} = {stale}  (old value, disabled)\n"
    )
    settings = [
        _file("app/m{:05d}_defaults.py", defaults),
        _file("app/m{:05d}_site.py", f"settings.{setting} = {override}\n"),
    ]
    used = sum(len(f) for f in settings)
    order = [target, f"{target}_v2", *names[1:]]
    rng.shuffle(order)
    module, body = 0, ""
    for name in order:
        if name in special:
            text = special[name]
        else:
            callee = rng.choice(plain_pool)
            text = _function(name, callee if callee != name else "len", "Handles the item.")
        body += text + "\n"
        if len(body) > 2_000:
            files.append(_file(f"app/m{module:05d}.py", body))
            used += len(files[-1])
            module, body = module + 1, ""
        if used + len(body) >= budget:
            break
    if body:
        files.append(_file(f"app/m{module:05d}.py", body))
    missing = [s for s in (caller, mention, lookalike) if not any(f"def {s}(" in f for f in files)]
    for name in missing:  # small sizes: the special functions always exist
        files.append(_file(f"app/m{len(files):05d}_{name}.py", special[name]))
    first, last = sorted(rng.sample(range(len(files) + 1), 2))
    files += [settings[0].format(first), settings[1].format(last)]
    files.sort(key=lambda f: f.split("\n", 1)[0])  # by path: the order modules load in
    if index % 2 == 0:
        query = f"Which function calls {target}()? Reply with the function name only."
        return Task(
            "codeqa",
            size,
            index,
            seed,
            files,
            query,
            caller,
            "needle",
            {"distractors": [mention, lookalike], "kind": "caller"},
        )
    query = (
        f"What value does the setting {setting} end up with once every module has loaded? "
        "Modules load in file-name order and a later assignment wins. Reply with the value "
        "only."
    )
    return Task(
        "codeqa",
        size,
        index,
        seed,
        files,
        query,
        str(override),
        "needle",
        {"distractors": [str(default), str(stale)], "kind": "setting"},
    )


#: Every built-in suite by name, in the order reports list them.
SUITES: dict[str, Generator] = {
    "niah": niah,
    "multi": multi,
    "aggregate": aggregate,
    "pairs": pairs,
    "codeqa": codeqa,
}


def generate(suite: str, seed: int, size: int, index: int) -> Task:
    """One task of a built-in suite."""
    try:
        return SUITES[suite](seed, size, index)
    except KeyError:
        raise ValueError(f"unknown suite {suite!r}; built-in suites: {', '.join(SUITES)}") from None


__all__ = ["SUITES", "TOPICS", "Generator", "filler_line", "generate"]
