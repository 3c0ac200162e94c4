"""A fictional workplace for the documents job: people, teams, rooms, projects, policies and chat channels
that no pretrained model can know (every name is made of invented syllables), written from a seed.

    python -m apiary.jobs.workplace_gen examples/workplace --seed 0

Each document states a few facts. Every fact has three wordings: the document's sentence, a practice
question (practice.jsonl: what learners may train on) and a held-out question (questions.jsonl: what the
worker is checked on, closed-book, and never trained on), so a worker that answers the held-out question
has learned the fact, not a string. The held-out questions ask about one or two facts of every document.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

ONSETS = ["b", "br", "d", "dr", "f", "g", "gl", "h", "k", "kr", "l", "m", "n", "p", "qu", "r", "s", "sk", "t", "th",
          "v", "w", "z", "zh"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ou", "y"]
CODAS = ["", "", "n", "l", "r", "s", "th", "m", "x", "nd", "rk"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
ROLES = ["analyst", "engineer", "designer", "coordinator", "archivist", "planner", "technician", "editor"]
TOPICS = ["Parking", "Travel", "Laptop", "Visitor", "Expense", "Overtime", "Holiday", "Training", "Printing", "Badge",
          "Locker", "Catering", "Stationery", "Remote work", "Relocation", "Conference", "Mentoring", "Recycling",
          "Bicycle", "Library", "Night access", "Equipment loan", "Sabbatical", "Guest network"]
EVENTS = ["summer picnic", "quiz night", "fire drill", "charity run", "winter party", "book swap", "open day",
          "hackathon", "plant sale", "chess evening"]
COUNTS = {"people": 80, "teams": 16, "rooms": 30, "projects": 40, "policies": 24, "channels": 10}


@dataclass(frozen=True)
class Fact:
    """One thing a document says, with a practice and a held-out wording of the question it answers."""

    doc: str
    practice: str
    heldout: str
    answer: str


@dataclass
class Written:
    name: str  # the document's path in the folder
    text: str
    facts: list[Fact]


class Names:
    """Invented words, never the same twice."""

    def __init__(self, rng: random.Random):
        self.rng, self.used = rng, set()

    def word(self, syllables: int = 2) -> str:
        while True:
            w = "".join(self.rng.choice(ONSETS) + self.rng.choice(VOWELS) + self.rng.choice(CODAS)
                        for _ in range(syllables)).capitalize()
            if w not in self.used and 5 <= len(w) <= 11:
                self.used.add(w)
                return w


def slug(text: str) -> str:
    return text.lower().replace(" ", "-")


def date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(2027, 2029)}"


def code(rng: random.Random, letters: str) -> str:
    return f"{letters}-{rng.randint(1000, 9999)}"


def person_doc(rng, n, full, team, room) -> Written:
    first, system, topic = full.split()[0], n.word(3), n.word(2).lower()
    joined, role = f"{rng.choice(MONTHS)} {rng.randint(2015, 2026)}", rng.choice(ROLES)
    name = f"people/{slug(full)}.md"
    text = (f"# {full}\n\n{full} joined the {team} team in {joined} as {'an' if role[0] in 'aeiou' else 'a'} {role}. "
            f"{first}'s desk is in room {room}. {first} owns the {system} system and is the person to ask about "
            f"{topic} reports.\n")
    return Written(name, text, [
        Fact(name, f"Where is {full}'s desk?", f"In which room does {full} sit?", room),
        Fact(name, f"Which system does {full} own?", f"{full} is responsible for which system?", system),
        Fact(name, f"When did {full} join?", f"In what month and year did {full} start working here?", joined),
        Fact(name, f"Which team did {full} join?", f"{full} belongs to which team?", team),
    ])


def team_doc(rng, team, lead, room) -> Written:
    day, hour, budget = rng.choice(WEEKDAYS), f"{rng.randint(9, 16)}:{rng.choice(['00', '30'])}", code(rng, team[:2].upper())
    name = f"teams/{slug(team)}.md"
    text = (f"# The {team} team\n\nThe {team} team is led by {lead}. The team meets every {day} at {hour} in room "
            f"{room}. Purchases for the team use budget code {budget}.\n")
    return Written(name, text, [
        Fact(name, f"Who leads the {team} team?", f"Who is the head of the {team} team?", lead),
        Fact(name, f"What is the budget code of the {team} team?", f"Which code do {team} team purchases go under?", budget),
        Fact(name, f"Which day does the {team} team meet?", f"On what weekday is the {team} team's meeting?", day),
    ])


def room_doc(rng, n, room) -> Written:
    building, seats, door = n.word(2) + " House", rng.randint(4, 40), f"{rng.randint(1000, 9999)}"
    name = f"rooms/{slug(room)}.md"
    text = (f"# Room {room}\n\nRoom {room} is on floor {rng.randint(1, 6)} of {building}. It seats {seats} people. "
            f"The door code is {door}; do not write it on the whiteboard.\n")
    return Written(name, text, [
        Fact(name, f"Which building is room {room} in?", f"Room {room} is located in which building?", building),
        Fact(name, f"What is the door code of room {room}?", f"Which code opens the door of room {room}?", door),
    ])


def project_doc(rng, n, project, team, sponsor) -> Written:
    due, tag = date(rng), code(rng, project[:3].upper())
    name = f"projects/{slug(project)}.md"
    text = (f"# Project {project}\n\nProject {project} is run by the {team} team and sponsored by {sponsor}. "
            f"It is due on {due}. File its tickets under the tag {tag}.\n")
    return Written(name, text, [
        Fact(name, f"Who sponsors Project {project}?", f"Who is the sponsor of Project {project}?", sponsor),
        Fact(name, f"Which tag do Project {project} tickets use?", f"Under which tag are Project {project} tickets filed?", tag),
        Fact(name, f"When is Project {project} due?", f"What is the deadline of Project {project}?", due),
    ])


def policy_doc(rng, topic, contact, team) -> Written:
    days, form = rng.randint(2, 30), code(rng, "F")
    name = f"policies/{slug(topic)}.md"
    text = (f"# {topic} policy\n\n{topic} requests go to {contact} of the {team} team. File them at least {days} days "
            f"ahead on form {form}. Late requests are refused.\n")
    return Written(name, text, [
        Fact(name, f"Who handles {topic.lower()} requests?", f"Whom should I send a {topic.lower()} request to?", contact),
        Fact(name, f"Which form is used for {topic.lower()} requests?", f"On what form do I file a {topic.lower()} request?", form),
    ])


def channel_doc(rng, event, host, room, other) -> Written:
    when = date(rng)
    name = f"channels/{slug(event)}.jsonl"
    lines = [{"author": host, "text": f"Reminder: the {event} is on {when} in room {room}."},
             {"author": other, "text": "Thanks! Should we bring anything?"},
             {"author": host, "text": f"Just yourselves. Ask me, {host}, if anything is unclear."}]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    return Written(name, text, [
        Fact(name, f"When is the {event}?", f"On which date will the {event} take place?", when),
        Fact(name, f"Where is the {event}?", f"In which room is the {event} held?", room),
    ])


def workplace(seed: int = 0) -> list[Written]:
    """Every document of the workplace of `seed`, with its facts."""
    rng = random.Random(seed)
    n = Names(rng)
    teams = [n.word() for _ in range(COUNTS["teams"])]
    rooms = [f"{n.word()}-{rng.randint(1, 9)}" for _ in range(COUNTS["rooms"])]
    people = [f"{n.word()} {n.word(2 + (i % 2))}" for i in range(COUNTS["people"])]
    docs = [person_doc(rng, n, p, rng.choice(teams), rng.choice(rooms)) for p in people]
    docs += [team_doc(rng, t, people[i], rng.choice(rooms)) for i, t in enumerate(teams)]
    docs += [room_doc(rng, n, r) for r in rooms]
    docs += [project_doc(rng, n, n.word(3), rng.choice(teams), rng.choice(people)) for _ in range(COUNTS["projects"])]
    docs += [policy_doc(rng, t, rng.choice(people), rng.choice(teams)) for t in TOPICS[:COUNTS["policies"]]]
    docs += [channel_doc(rng, e, rng.choice(people), rng.choice(rooms), rng.choice(people))
             for e in EVENTS[:COUNTS["channels"]]]
    return docs


def write(folder: Path, seed: int = 0, per_document: int = 2) -> tuple[int, int, int]:
    """Write the documents, practice.jsonl (every fact) and questions.jsonl (`per_document` facts of each
    document, drawn by the seed) into `folder`; returns (documents, practice questions, held-out questions)."""
    rng = random.Random(seed + 1)
    docs = workplace(seed)
    held, practice = [], []
    for d in docs:
        path = folder / d.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(d.text, encoding="utf-8")
        practice += [{"question": f.practice, "answer": f.answer, "doc": f.doc} for f in d.facts]
        held += [{"question": f.heldout, "answer": f.answer, "doc": f.doc} for f in rng.sample(d.facts, per_document)]
    for name, rows in ((folder / "practice.jsonl", practice), (folder / "questions.jsonl", held)):
        name.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(docs), len(practice), len(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = write(args.folder, args.seed)
    print(f"{args.folder}: {counts[0]} documents, {counts[1]} practice questions, {counts[2]} held-out questions")


if __name__ == "__main__":
    main()
