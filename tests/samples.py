"""Small documents of our own that the end-to-end tests upload (the CLI's and the web app's)."""

SCRIPT = """Title: The Night Shift

INT. DINER - NIGHT

Rain against the glass. ANNA wipes the counter.

ANNA
Coffee. Black. The machine takes twenty minutes to warm up.

BEN
You always say that.

EXT. PARKING LOT - DAY

ANNA
Keys.

BEN
The lighthouse keeper left them under the mat.

INT. CAR - NIGHT

BEN
Where to?

ANNA
The lighthouse. Before the tide turns.
"""
NOTES = "# Production notes\n\n## Locations\n\nThe diner scenes are shot at the harbour cafe on Tuesdays.\n"
# One section longer than a citation's 280-character snippet (and shorter than a chunk): its last
# words are far past the snippet, so only the whole passage shows them.
GRINDER = (
    "# Grinder manual\n\n## Burrs\n\n"
    + " ".join(f"Sentence {n} says the conical burrs are cleaned with a dry brush every week." for n in range(12))
    + " The last sentence says to never wash the burrs with water.\n"
)
