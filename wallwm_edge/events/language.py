"""Training language: many ways to say each subtask event, so new wording at test time is not new.

The vocabulary (vocab.py) gives every event one caption, 3 training paraphrases and 2 held-out ones.
A teacher trained on those 4 texts per event fell from 23.8 to 3.6 Task Progress when the same events
were worded by someone else. Here each subtask key gets a broad, deterministic set of training texts:

    verb synonyms      x  object (and destination) synonyms  x  sentence shapes
    ("grab", "grip")      ("puck", "disc", "hockey puck")       ("please ...", "can you ...?", "... now")
    + casing (Title, UPPER, lower) and small typos (a swapped, dropped or doubled letter)

Held out stays held out: a generated text never equals (case- and punctuation-blind) one of the key's
held-out paraphrases, and the held-out paraphrases' distinctive verbs are not in the synonym lists, so
the `heldout_paraphrase` split still measures language the model has never seen. The independent
phrasings in wallwm_edge/eval/independent_phrasings.json were written without these lists and are
never used for training.
"""

from __future__ import annotations

import functools
import random
import re

from wallwm_edge.events.vocab import caption

# object -> its names (the first is the vocabulary's own word)
OBJECT_NAMES = {
    "puck": ("puck", "disc", "disk", "hockey puck", "round puck", "flat cylinder", "small round piece"),
    "cube": ("cube", "small cube", "box", "little block", "square piece", "cubic block"),
    "block": ("block", "brick", "wooden block", "box", "rectangular block", "cuboid"),
    "button": ("button", "push button", "switch", "red button", "buzzer", "plunger"),
    "drawer": ("drawer", "drawer handle", "handle of the drawer", "cabinet drawer", "pull-out drawer"),
    "target": ("target", "goal", "goal point", "target point", "marked spot", "goal position", "target location"),
}
DEST_NAMES = {
    "target": ("target", "goal", "goal spot", "marked spot", "target location", "goal position", "marker"),
    "bin": ("bin", "other bin", "second bin", "box next to it", "container", "other box"),
    "shelf": ("shelf", "top shelf", "shelf above", "rack", "shelf in front", "upper shelf"),
}
# verb -> templates over {o} (object) and {d} (destination)
VERB_TEMPLATES = {
    "reach": ("reach the {o}", "move to the {o}", "go to the {o}", "approach the {o}", "get to the {o}",
              "reach for the {o}", "move the gripper to the {o}", "position the gripper at the {o}",
              "get close to the {o}", "move your hand to the {o}", "go toward the {o}", "put the gripper by the {o}",
              "bring the hand to the {o}", "get near the {o}", "travel to the {o}"),
    "grasp": ("grasp the {o}", "grab the {o}", "pick up the {o}", "take hold of the {o}", "grip the {o}",
              "hold the {o}", "catch the {o}", "clutch the {o}", "close the gripper on the {o}", "get a grip on the {o}",
              "secure the {o} in the gripper", "pinch the {o}", "grasp the {o} with the fingers", "take the {o}"),
    "carry": ("carry the {o} to the {d}", "move the {o} to the {d}", "bring the {o} to the {d}",
              "transport the {o} to the {d}", "put the {o} on the {d}", "place the {o} at the {d}",
              "lift the {o} to the {d}", "take the {o} to the {d}", "set the {o} down at the {d}",
              "move the {o} over to the {d}", "drop the {o} at the {d}", "put the {o} in the {d}",
              "relocate the {o} to the {d}", "bring the {o} over the {d}"),
    "push": ("push the {o} to the {d}", "slide the {o} to the {d}", "shove the {o} toward the {d}",
             "move the {o} along the table to the {d}", "push the {o} across to the {d}", "slide the {o} over the table to the {d}",
             "push the {o} toward the {d}", "sweep the {o} to the {d}", "glide the {o} to the {d}",
             "push the {o} along to the {d}", "move the {o} by pushing it to the {d}", "scoot the {o} to the {d}"),
    "press": ("press the {o}", "push the {o} down", "press down on the {o}", "hit the {o}", "push the {o}",
              "press the {o} down", "click the {o}", "punch the {o}", "push down the {o}", "activate the {o}",
              "press on the {o}", "smash the {o}", "poke the {o} down"),
    "pull": ("pull the {o} open", "open the {o}", "pull the {o} out", "draw the {o} open", "pull open the {o}",
             "yank the {o} open", "open up the {o}", "pull on the {o}", "draw out the {o}", "pull the {o} toward the robot",
             "get the {o} open", "haul the {o} open"),
}
SHAPES = ("{s}", "{s}", "{s}.", "please {s}", "{s} please", "now {s}", "next, {s}", "can you {s}?",
          "I want you to {s}", "you should {s}", "{s} now", "go ahead and {s}", "the next step is to {s}",
          "okay, {s}", "{s}, carefully", "try to {s}", "robot, {s}", "your next move: {s}", "{s} next", "time to {s}")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


def _typo(text: str, rng: random.Random) -> str:
    """One swapped, dropped or doubled letter inside a word of 4+ letters (text unchanged if none)."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return text
    i = rng.choice(long)
    w = words[i]
    j = rng.randrange(1, len(w) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    elif kind == 1:
        w = w[:j] + w[j + 1 :]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def _casing(text: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        return text[:1].upper() + text[1:]
    if r < 0.38:
        return text.upper()
    if r < 0.45:
        return text.title()
    return text


@functools.cache
def training_texts(key: str, n: int = 64, seed: int = 0) -> tuple[str, ...]:
    """The caption, the vocabulary's training paraphrases, then generated texts: `n` in all at most.

    Deterministic in (key, n, seed). Keys outside the subtask vocabulary get the caption and its
    paraphrases only. Never contains a held-out paraphrase of the key.
    """
    c = caption(key)
    base = [c.text, *c.paraphrases]
    verb, _, rest = key.partition(":")
    if verb not in VERB_TEMPLATES:
        return tuple(base)
    obj, _, dest = rest.partition("@")
    heldout = {_norm(h) for h in c.heldout_paraphrases}
    rng = random.Random(f"{key}/{seed}")
    out, seen = list(base), {_norm(t) for t in base}
    onames, dnames = OBJECT_NAMES.get(obj, (obj,)), DEST_NAMES.get(dest, (dest,))
    for _ in range(50 * n):
        if len(out) >= n:
            break
        s = rng.choice(VERB_TEMPLATES[verb]).format(o=rng.choice(onames), d=rng.choice(dnames))
        s = rng.choice(SHAPES).format(s=s)
        s = _casing(s, rng)
        if rng.random() < 0.15:
            s = _typo(s, rng)
        k = _norm(s)
        if k in heldout or k in seen:
            continue
        seen.add(k)
        out.append(s)
    return tuple(out)
