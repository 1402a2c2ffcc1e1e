"""axis — inter-agency document exchange hub and national document axis simulator.

The data path reads top to bottom: endpoints (submit) → axis.router (parse → verify → route → count)
→ delivery → endpoints inbox. Pure logic (envelope, signing, verification, routing decisions) works on
bytes and objects only; aio-pika, FastAPI and SQL live in thin shells.
"""

__version__ = "0.1.0"
