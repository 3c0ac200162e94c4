"""Candidate retention items, generated from word lists: what a small chat model might know.

Five kinds, none phrased like a job (the jobs are reasoning-gym "a + b", "a * b" and gcd):
facts, word tasks, arithmetic in words, instruction and format following, short free answers.
Each item names its `checker` (see `retention.CHECKERS`). `build_retention` keeps the ones the
bundled core answers right robustly; this module only proposes them.
"""

from __future__ import annotations

CAPITALS = {
    "France": "Paris", "Italy": "Rome", "Japan": "Tokyo", "Germany": "Berlin", "Spain": "Madrid",
    "England": "London", "Russia": "Moscow", "China": "Beijing", "Egypt": "Cairo", "Canada": "Ottawa",
    "Greece": "Athens", "Portugal": "Lisbon", "Austria": "Vienna", "Ireland": "Dublin", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Hungary": "Budapest", "Belgium": "Brussels", "the Netherlands": "Amsterdam", "Thailand": "Bangkok",
    "South Korea": "Seoul", "Kenya": "Nairobi", "Argentina": "Buenos Aires", "Peru": "Lima",
    "Cuba": "Havana", "Mexico": "Mexico City", "Iran": "Tehran", "Iraq": "Baghdad", "Turkey": "Ankara",
    "Australia": "Canberra", "India": "New Delhi", "Brazil": "Brasilia", "Chile": "Santiago",
    "Colombia": "Bogota", "Vietnam": "Hanoi", "the Philippines": "Manila", "Indonesia": "Jakarta",
    "Switzerland": "Bern", "Scotland": "Edinburgh", "Wales": "Cardiff", "Czechia": "Prague",
    "Romania": "Bucharest", "Ukraine": "Kyiv", "Saudi Arabia": "Riyadh", "Israel": "Jerusalem",
    "Lebanon": "Beirut", "Syria": "Damascus", "Morocco": "Rabat", "Nigeria": "Abuja", "Ethiopia": "Addis Ababa",
    "Pakistan": "Islamabad", "Afghanistan": "Kabul", "Nepal": "Kathmandu", "Malaysia": "Kuala Lumpur",
    "Singapore": "Singapore", "New Zealand": "Wellington", "Venezuela": "Caracas", "Iceland": "Reykjavik",
    "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb", "the United States": "Washington",
}

LANGUAGES = {
    "France": "French", "Germany": "German", "Italy": "Italian", "Spain": "Spanish", "Japan": "Japanese",
    "China": "Chinese", "Russia": "Russian", "Portugal": "Portuguese", "Brazil": "Portuguese",
    "Mexico": "Spanish", "Greece": "Greek", "England": "English", "Australia": "English", "Poland": "Polish",
    "Sweden": "Swedish", "the Netherlands": "Dutch", "Turkey": "Turkish", "Korea": "Korean",
    "Egypt": "Arabic", "Argentina": "Spanish", "Norway": "Norwegian", "Finland": "Finnish",
}

CONTINENTS = {
    "France": "Europe", "Germany": "Europe", "Italy": "Europe", "Spain": "Europe", "Poland": "Europe",
    "Japan": "Asia", "China": "Asia", "India": "Asia", "Thailand": "Asia", "Vietnam": "Asia",
    "Egypt": "Africa", "Kenya": "Africa", "Nigeria": "Africa", "Ghana": "Africa", "Morocco": "Africa",
    "Brazil": "South America", "Argentina": "South America", "Peru": "South America", "Chile": "South America",
    "Canada": "North America", "Mexico": "North America", "the United States": "North America",
}

FACTS = [
    ("What colour is the sky on a clear day?", "blue"), ("What colour is grass?", "green"),
    ("What colour is snow?", "white"), ("What colour is a banana?", "yellow"), ("What colour is coal?", "black"),
    ("What colour is a ripe tomato?", "red"), ("What colour is an orange?", "orange"),
    ("What colour are most leaves in summer?", "green"), ("What colour is milk?", "white"),
    ("What is the largest planet in our solar system?", "Jupiter"), ("What planet do we live on?", "Earth"),
    ("Which planet is called the Red Planet?", "Mars"), ("What star is closest to the Earth?", "Sun"),
    ("What is the largest ocean on Earth?", "Pacific"), ("What is the tallest mountain in the world?", "Everest"),
    ("What is the longest river in Africa?", "Nile"), ("What is the largest desert in Africa?", "Sahara"),
    ("What gas do plants take in from the air?", "carbon dioxide"), ("What gas do humans need to breathe?", "oxygen"),
    ("What is the chemical symbol for gold?", "Au"), ("What is the chemical symbol for water?", "H2O"),
    ("What is the freezing point of water in degrees Celsius?", "0"),
    ("What is the boiling point of water in degrees Celsius?", "100"),
    ("How many days are in a week?", "7"), ("How many months are in a year?", "12"),
    ("How many hours are in a day?", "24"), ("How many minutes are in an hour?", "60"),
    ("How many seconds are in a minute?", "60"), ("How many days are in a year?", "365"),
    ("How many legs does a spider have?", "8"), ("How many legs does a dog have?", "4"),
    ("How many legs does an insect have?", "6"), ("How many legs does a bird have?", "2"),
    ("How many sides does a triangle have?", "3"), ("How many sides does a square have?", "4"),
    ("How many sides does a hexagon have?", "6"), ("How many sides does an octagon have?", "8"),
    ("How many sides does a pentagon have?", "5"), ("How many wheels does a bicycle have?", "2"),
    ("How many wheels does a tricycle have?", "3"), ("How many continents are there?", "7"),
    ("How many players are on a football team on the field?", "11"), ("How many strings does a violin have?", "4"),
    ("What is the first month of the year?", "January"), ("What is the last month of the year?", "December"),
    ("What season comes after winter?", "spring"), ("What season comes after summer?", "autumn"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"), ("Who painted the Mona Lisa?", "Leonardo"),
    ("Who discovered gravity when an apple fell?", "Newton"),
    ("What do we call a baby dog?", "puppy"), ("What do we call a baby cat?", "kitten"),
    ("What do we call a baby cow?", "calf"), ("What do we call a baby sheep?", "lamb"),
    ("What do we call a baby horse?", "foal"), ("What do we call a baby duck?", "duckling"),
    ("What is the largest animal on Earth?", "blue whale"), ("What is the fastest land animal?", "cheetah"),
    ("What is the tallest animal?", "giraffe"), ("Which animal is known as the king of the jungle?", "lion"),
    ("What is the main ingredient of bread?", "flour"), ("What is the main ingredient of guacamole?", "avocado"),
    ("What do you call frozen water?", "ice"), ("What is the hardest natural substance?", "diamond"),
    ("What organ pumps blood through the body?", "heart"), ("What organ do we use to think?", "brain"),
    ("What organ do we use to breathe?", "lungs"), ("How many teeth does an adult human usually have?", "32"),
    ("What currency is used in Japan?", "yen"), ("What currency is used in the United Kingdom?", "pound"),
    ("What currency is used in the United States?", "dollar"), ("What currency is used in Germany?", "euro"),
]

OPPOSITES = {
    "hot": "cold", "up": "down", "big": "small", "day": "night", "yes": "no", "left": "right", "fast": "slow",
    "happy": "sad", "old": "new", "open": "closed", "full": "empty", "light": "dark", "wet": "dry",
    "hard": "soft", "high": "low", "in": "out", "black": "white", "good": "bad", "rich": "poor", "early": "late",
    "thick": "thin", "tall": "short", "strong": "weak", "loud": "quiet", "first": "last", "win": "lose",
    "push": "pull", "come": "go", "buy": "sell", "love": "hate", "true": "false", "clean": "dirty",
    "heavy": "light", "inside": "outside", "above": "below", "start": "finish", "top": "bottom",
    "north": "south", "east": "west", "before": "after", "always": "never", "friend": "enemy",
    "question": "answer", "near": "far", "cheap": "expensive", "easy": "difficult", "sweet": "sour",
    "alive": "dead", "summer": "winter", "boy": "girl", "king": "queen", "man": "woman",
}

PLURALS = {
    "mouse": "mice", "child": "children", "foot": "feet", "tooth": "teeth", "man": "men", "woman": "women",
    "goose": "geese", "person": "people", "cat": "cats", "dog": "dogs", "box": "boxes", "baby": "babies",
    "knife": "knives", "leaf": "leaves", "wolf": "wolves", "city": "cities", "bus": "buses", "ox": "oxen",
    "sheep": "sheep", "fish": "fish", "house": "houses", "book": "books", "church": "churches", "glass": "glasses",
}

PAST = {
    "go": "went", "eat": "ate", "see": "saw", "run": "ran", "swim": "swam", "write": "wrote", "take": "took",
    "give": "gave", "sing": "sang", "drink": "drank", "buy": "bought", "think": "thought", "bring": "brought",
    "teach": "taught", "catch": "caught", "fly": "flew", "draw": "drew", "speak": "spoke", "break": "broke",
    "choose": "chose", "drive": "drove", "ride": "rode", "sleep": "slept", "feel": "felt", "make": "made",
    "walk": "walked", "play": "played", "jump": "jumped", "talk": "talked", "sit": "sat", "stand": "stood",
    "tell": "told", "find": "found", "know": "knew", "grow": "grew", "begin": "began", "forget": "forgot",
}

WORDS = [
    "banana", "table", "garden", "rocket", "pencil", "window", "castle", "dragon", "elephant", "guitar",
    "jacket", "kitchen", "lemon", "monkey", "orange", "planet", "rabbit", "sunset", "tiger", "umbrella",
    "violin", "winter", "yellow", "zebra", "bridge", "candle", "doctor", "forest", "hammer", "mountain",
]

NUMBER_WORDS = {
    0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
    9: "nine", 10: "ten", 11: "eleven", 12: "twelve", 13: "thirteen", 14: "fourteen", 15: "fifteen",
    16: "sixteen", 17: "seventeen", 18: "eighteen", 19: "nineteen", 20: "twenty", 30: "thirty", 40: "forty",
    50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety", 100: "one hundred",
}

FREE = [
    ("What do bees make?", "honey"), ("What animal says moo?", "cow"), ("What animal says woof?", "dog"),
    ("What animal says meow?", "cat"), ("What animal says quack?", "duck"), ("What animal says oink?", "pig"),
    ("What do you use to cut paper?", "scissors"), ("What do you wear on your feet?", "shoes"),
    ("What do you use to open a locked door?", "key"), ("What do cows give us to drink?", "milk"),
    ("What do chickens lay?", "eggs"), ("What falls from clouds when it rains?", "water"),
    ("What do you call the meal eaten in the morning?", "breakfast"), ("Where do fish live?", "water"),
    ("What do you sleep in at night?", "bed"), ("What do you use to brush your teeth?", "toothbrush"),
    ("What do you read that has pages?", "book"), ("What shines in the sky at night?", "moon"),
    ("What do plants need from the sun?", "light"), ("What do you call a person who teaches?", "teacher"),
    ("What do you call a person who flies a plane?", "pilot"), ("What do you call a person who cooks?", "chef"),
    ("What do you call a doctor for animals?", "vet"), ("What do you use to take a photo?", "camera"),
    ("What is the opposite of the word north on a compass?", "south"),
    ("What fruit keeps the doctor away if you eat one a day?", "apple"),
    ("What do monkeys like to eat?", "bananas"), ("What do pandas eat?", "bamboo"),
    ("What do you call a house made of ice?", "igloo"), ("What insect makes a web?", "spider"),
    ("What do caterpillars turn into?", "butterflies"), ("What sport uses a bat and a ball and wickets?", "cricket"),
    ("What instrument has black and white keys?", "piano"), ("What do you call a group of wolves?", "pack"),
    ("What do you call a group of fish?", "school"), ("What is the colour of a stop sign?", "red"),
    ("What holiday is celebrated on December 25?", "Christmas"), ("What do you call the day after today?", "tomorrow"),
    ("What do you call the day before today?", "yesterday"), ("What do we breathe?", "air"),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def _item(kind: str, question: str, answer: str, checker: str = "word") -> dict:
    return {"question": question, "answer": answer, "kind": kind, "checker": checker}


def facts() -> list[dict]:
    out = [_item("fact", f"What is the capital of {c}? Answer with one word.", a) for c, a in CAPITALS.items()]
    out += [_item("fact", f"What language is spoken in {c}?", a) for c, a in LANGUAGES.items()]
    out += [_item("fact", f"On which continent is {c}?", a) for c, a in CONTINENTS.items()]
    out += [_item("fact", q, a, "number" if a.isdigit() else "word") for q, a in FACTS]
    out += [_item("fact", f"What day comes after {d}?", DAYS[(i + 1) % 7]) for i, d in enumerate(DAYS)]
    out += [_item("fact", f"What day comes before {d}?", DAYS[i - 1]) for i, d in enumerate(DAYS)]
    out += [_item("fact", f"What month comes after {m}?", MONTHS[(i + 1) % 12]) for i, m in enumerate(MONTHS)]
    out += [_item("fact", f"What month comes before {m}?", MONTHS[i - 1]) for i, m in enumerate(MONTHS)]
    return out


def word_tasks() -> list[dict]:
    out = [_item("word", f"What is the opposite of {w}? Answer with one word.", a) for w, a in OPPOSITES.items()]
    out += [_item("word", f"What is the plural of {w}?", a) for w, a in PLURALS.items()]
    out += [_item("word", f"What is the past tense of {w}?", a) for w, a in PAST.items()]
    out += [_item("word", f"What is the first letter of the word {w}?", w[0], "letter") for w in WORDS if w[0] not in "ai"]
    out += [_item("word", f"What is the last letter of the word {w}?", w[-1], "letter") for w in WORDS if w[-1] not in "ai"]
    out += [_item("word", f"Which word rhymes with cat: hat or dog?", "hat")]
    return out


def arithmetic_in_words() -> list[dict]:
    out = [_item("arithmetic", f"What number comes after {n}?", str(n + 1), "number") for n in range(1, 40, 2)]
    out += [_item("arithmetic", f"What number comes before {n}?", str(n - 1), "number") for n in range(2, 40, 3)]
    out += [_item("arithmetic", f"What is double {n}?", str(2 * n), "number") for n in range(2, 26)]
    out += [_item("arithmetic", f"What is half of {n}?", str(n // 2), "number") for n in range(4, 42, 2)]
    out += [_item("arithmetic", f"What is {NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}? Answer with a number.",
                  str(a + b), "number") for a in range(1, 10, 2) for b in range(2, 10, 3)]
    out += [_item("arithmetic", f"If you have {a} apples and eat {b}, how many apples are left?", str(a - b), "number")
            for a in range(5, 13) for b in (1, 2, 3)]
    out += [_item("arithmetic", f"How many is {k}?", v, "number")
            for k, v in [("a dozen", "12"), ("a pair", "2"), ("a score", "20"), ("a century in years", "100")]]
    return out


def format_following() -> list[dict]:
    out = [_item("format", f"Write the word {w} in capital letters.", w.upper(), "exact_case") for w in WORDS]
    out += [_item("format", f"Reply with only the word {w}.", w, "only") for w in WORDS]
    out += [_item("format", f"Write the number {NUMBER_WORDS[n]} using digits.", str(n), "number") for n in NUMBER_WORDS]
    out += [_item("format", f"Write the number {n} in words.", w, "word") for n, w in NUMBER_WORDS.items() if n <= 20]
    out += [_item("format", f"Repeat this word exactly: {w}", w, "word") for w in WORDS]
    return out


def free_answers() -> list[dict]:
    return [_item("free", q, a) for q, a in FREE]


def candidates() -> list[dict]:
    """Every candidate, in a fixed order, each question once."""
    seen, out = set(), []
    for item in facts() + word_tasks() + arithmetic_in_words() + format_following() + free_answers():
        if item["question"] not in seen:
            seen.add(item["question"])
            out.append(item)
    return out
