"""A small third-party CRUD service (notes over SQLAlchemy) observed by the toolkit.

Run it:  uvicorn notes_app:app --port 8080   (from this directory; see docs/toolkit.md)
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from observability import ObservabilityConfig, instrument

DATA = Path(os.environ.get("NOTES_DATA_DIR", "./var"))
DATA.mkdir(parents=True, exist_ok=True)
engine = create_engine(f"sqlite:///{DATA / 'notes.db'}")


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(2000))


class NoteIn(BaseModel):
    text: str


Base.metadata.create_all(engine)
app = FastAPI(title="Notes")


@app.post("/notes", status_code=201)
def create_note(note: NoteIn) -> dict[str, object]:
    with Session(engine) as session:
        row = Note(text=note.text)
        session.add(row)
        session.commit()
        return {"id": row.id, "text": row.text}


@app.get("/notes/{note_id}")
def read_note(note_id: int) -> dict[str, object]:
    with Session(engine) as session:
        row = session.scalar(select(Note).where(Note.id == note_id))
        if row is None:
            raise HTTPException(404, "no such note")
        if row.text == "crash":
            raise RuntimeError(f"cannot render note {note_id}")
        return {"id": row.id, "text": row.text}


# --- observability: everything below is the whole wiring ---------------------------------
observability = instrument(
    app,
    ObservabilityConfig(
        service="notes",
        data_dir=DATA / "observability",
        metrics_token=os.environ["NOTES_METRICS_TOKEN"],
        admin_token=os.environ["NOTES_ADMIN_TOKEN"],
    ),
)
observability.instrument_engine(engine)  # query timing, slow queries, pool use
