"""Deterministic, generated text for the benchmarks: Markdown documents and chunk-sized passages.

A fixed seed, so every run measures the same input; plain English-like words, so tiktoken
sees ordinary text (about 4-5 characters a token).
"""

import random

_WORDS = (
    "the machine boiler water pressure valve pump grinder burr shot espresso milk steam wand "
    "temperature descale citric acid tank group head portafilter basket tamp dose yield ratio "
    "seconds minutes weekly daily clean rinse flush gasket seal screen shower filter cartridge "
    "hardness scale mineral buildup warning light display button menu setting manual warranty "
    "service technician replace inspect adjust calibrate measure record schedule operator safety "
    "power cable outlet fuse circuit sensor thermostat heating element drip tray cup warmer lid "
    "before after during when until unless because therefore however also always never often "
    "should must may can will is are was were has have had with without into onto from over under"
).split()


def sentence(rng: random.Random, *, words: tuple[int, int] = (8, 22)) -> str:
    chosen = [rng.choice(_WORDS) for _ in range(rng.randint(*words))]
    if rng.random() < 0.2:
        chosen.insert(rng.randrange(len(chosen)), f"{rng.randint(2, 400)}")
    return " ".join(chosen).capitalize() + rng.choice(".....!?")


def paragraph(rng: random.Random, *, sentences: tuple[int, int] = (3, 8)) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(*sentences)))


def markdown_document(target_bytes: int, *, seed: int = 7, title: str = "Espresso machine service manual") -> str:
    """A Markdown document of about `target_bytes`: nested headings, paragraphs (some longer
    than a chunk, so the sentence splitter runs too), lists and the odd fenced code block."""
    rng = random.Random(seed)
    parts = [f"# {title}", "", paragraph(rng), ""]
    size = sum(len(part) + 1 for part in parts)
    chapter = section = 0
    while size < target_bytes:
        roll = rng.random()
        if roll < 0.06:
            chapter += 1
            section = 0
            block = f"## Chapter {chapter}: {sentence(rng, words=(2, 4)).rstrip('.!?')}"
        elif roll < 0.2:
            section += 1
            block = f"### {chapter}.{section} {sentence(rng, words=(2, 5)).rstrip('.!?')}"
        elif roll < 0.27:
            block = "\n".join(f"- {sentence(rng, words=(4, 10))}" for _ in range(rng.randint(3, 6)))
        elif roll < 0.29:
            block = "```\n" + "\n".join(f"set {rng.choice(_WORDS)} = {rng.randint(0, 99)}" for _ in range(6)) + "\n```"
        elif roll < 0.33:
            block = paragraph(rng, sentences=(25, 40))  # longer than a 300-token chunk
        else:
            block = paragraph(rng)
        parts += [block, ""]
        size += len(block) + 2
    return "\n".join(parts)


def passages(count: int, *, seed: int = 11, sentences: tuple[int, int] = (11, 15)) -> list[str]:
    """`count` chunk-sized texts (about 200-300 tokens each, like the chunker's output)."""
    rng = random.Random(seed)
    return [paragraph(rng, sentences=sentences) for _ in range(count)]
