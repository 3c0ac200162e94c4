"""Word lists for `retention_candidates`: plain, well-known material a small chat model may know.

Data only. An answer with "|" lists acceptable alternatives (the `word` and `choice` checkers
accept any of them). Kept apart from the generators so each reads on its own.
"""

from __future__ import annotations

# country: (capital, language, person from there, continent); "" where none is asked
COUNTRIES = {
    "France": ("Paris", "French", "French", "Europe"), "Italy": ("Rome", "Italian", "Italian", "Europe"),
    "Japan": ("Tokyo", "Japanese", "Japanese", "Asia"), "Germany": ("Berlin", "German", "German", "Europe"),
    "Spain": ("Madrid", "Spanish", "Spanish|Spaniard", "Europe"), "England": ("London", "English", "English", "Europe"),
    "Russia": ("Moscow", "Russian", "Russian", "Europe|Asia"), "China": ("Beijing", "Chinese|Mandarin", "Chinese", "Asia"),
    "Egypt": ("Cairo", "Arabic", "Egyptian", "Africa"), "Canada": ("Ottawa", "English|French", "Canadian", "North America"),
    "Greece": ("Athens", "Greek", "Greek", "Europe"), "Portugal": ("Lisbon", "Portuguese", "Portuguese", "Europe"),
    "Austria": ("Vienna", "German", "Austrian", "Europe"), "Ireland": ("Dublin", "English|Irish", "Irish", "Europe"),
    "Norway": ("Oslo", "Norwegian", "Norwegian", "Europe"), "Sweden": ("Stockholm", "Swedish", "Swedish|Swede", "Europe"),
    "Finland": ("Helsinki", "Finnish", "Finnish|Finn", "Europe"), "Hungary": ("Budapest", "Hungarian", "Hungarian", "Europe"),
    "Belgium": ("Brussels", "", "Belgian", "Europe"), "the Netherlands": ("Amsterdam", "Dutch", "Dutch", "Europe"),
    "Thailand": ("Bangkok", "Thai", "Thai", "Asia"), "South Korea": ("Seoul", "Korean", "Korean", "Asia"),
    "Kenya": ("Nairobi", "Swahili|English", "Kenyan", "Africa"), "Argentina": ("Buenos Aires", "Spanish", "Argentine|Argentinian", "South America"),
    "Peru": ("Lima", "Spanish", "Peruvian", "South America"), "Cuba": ("Havana", "Spanish", "Cuban", "North America"),
    "Mexico": ("Mexico City", "Spanish", "Mexican", "North America"), "Iran": ("Tehran", "Persian|Farsi", "Iranian", "Asia"),
    "Iraq": ("Baghdad", "Arabic", "Iraqi", "Asia"), "Australia": ("Canberra", "English", "Australian", "Australia|Oceania"),
    "Brazil": ("Brasilia", "Portuguese", "Brazilian", "South America"), "Chile": ("Santiago", "Spanish", "Chilean", "South America"),
    "Colombia": ("Bogota", "Spanish", "Colombian", "South America"), "Vietnam": ("Hanoi", "Vietnamese", "Vietnamese", "Asia"),
    "the Philippines": ("Manila", "Filipino|Tagalog|English", "Filipino", "Asia"), "Indonesia": ("Jakarta", "Indonesian", "Indonesian", "Asia"),
    "Scotland": ("Edinburgh", "English", "Scottish|Scot", "Europe"), "Czechia": ("Prague", "Czech", "Czech", "Europe"),
    "Romania": ("Bucharest", "Romanian", "Romanian", "Europe"), "Israel": ("Jerusalem", "Hebrew", "Israeli", "Asia"),
    "Syria": ("Damascus", "Arabic", "Syrian", "Asia"), "Morocco": ("Rabat", "Arabic", "Moroccan", "Africa"),
    "Ethiopia": ("Addis Ababa", "Amharic", "Ethiopian", "Africa"), "Afghanistan": ("Kabul", "", "Afghan", "Asia"),
    "Malaysia": ("Kuala Lumpur", "Malay", "Malaysian", "Asia"), "New Zealand": ("Wellington", "English", "New Zealander|Kiwi", "Oceania|Australia"),
    "Iceland": ("Reykjavik", "Icelandic", "Icelandic|Icelander", "Europe"), "Bulgaria": ("Sofia", "Bulgarian", "Bulgarian", "Europe"),
    "Poland": ("", "Polish", "Polish|Pole", "Europe"), "Turkey": ("", "Turkish", "Turkish|Turk", "Asia|Europe"),
    "India": ("", "Hindi|English", "Indian", "Asia"), "Denmark": ("", "Danish", "Danish|Dane", "Europe"),
    "Nigeria": ("", "English", "Nigerian", "Africa"), "Ghana": ("Accra", "English", "Ghanaian", "Africa"),
    "Pakistan": ("", "Urdu|English", "Pakistani", "Asia"), "Ukraine": ("", "Ukrainian", "Ukrainian", "Europe"),
    "Saudi Arabia": ("", "Arabic", "Saudi", "Asia"), "Jamaica": ("Kingston", "English", "Jamaican", "North America"),
}

OPPOSITES = {
    "hot": "cold", "up": "down", "big": "small|little", "day": "night", "yes": "no", "left": "right", "fast": "slow",
    "happy": "sad|unhappy", "old": "new|young", "open": "closed|close|shut", "full": "empty", "light": "dark|heavy",
    "wet": "dry", "hard": "soft|easy", "high": "low", "black": "white", "good": "bad|evil", "early": "late",
    "thick": "thin", "tall": "short", "strong": "weak", "loud": "quiet|soft", "push": "pull", "buy": "sell",
    "true": "false", "heavy": "light", "inside": "outside", "top": "bottom", "north": "south", "east": "west",
    "before": "after", "always": "never", "near": "far", "summer": "winter", "boy": "girl", "king": "queen",
    "south": "north", "west": "east", "down": "up", "cold": "hot", "small": "big|large", "night": "day",
    "right": "left|wrong", "slow": "fast|quick", "sad": "happy", "new": "old", "closed": "open", "empty": "full",
    "dark": "light|bright", "dry": "wet", "soft": "hard|loud", "low": "high", "white": "black", "bad": "good",
    "late": "early", "thin": "thick|fat", "short": "long|tall", "weak": "strong", "pull": "push", "sell": "buy",
    "false": "true", "outside": "inside", "bottom": "top", "after": "before", "never": "always", "far": "near|close",
    "winter": "summer", "girl": "boy", "queen": "king", "long": "short", "large": "small", "young": "old",
    "wide": "narrow", "deep": "shallow", "sunny": "cloudy|rainy", "happiness": "sadness|unhappiness",
    "beginning": "end|ending", "question": "answer", "girlfriend": "boyfriend", "father": "mother", "mother": "father",
    "brother": "sister", "sister": "brother", "husband": "wife", "wife": "husband", "son": "daughter",
    "daughter": "son", "uncle": "aunt", "aunt": "uncle", "morning": "evening|night", "sunrise": "sunset",
    "sunset": "sunrise", "asleep": "awake", "awake": "asleep", "give": "take|receive", "over": "under",
    "under": "over|above", "forward": "backward|backwards", "love": "hate", "rich": "poor", "clean": "dirty",
    "friend": "enemy|foe", "remember": "forget", "arrive": "leave|depart", "laugh": "cry", "smooth": "rough",
    "sharp": "dull|blunt", "safe": "dangerous|unsafe", "lost": "found", "visible": "invisible", "possible": "impossible",
    "correct": "incorrect|wrong", "polite": "impolite|rude", "kind": "unkind|cruel", "honest": "dishonest",
    "lucky": "unlucky", "known": "unknown", "tidy": "untidy|messy", "fair": "unfair", "healthy": "unhealthy|sick",
    "legal": "illegal", "even": "odd|uneven", "maximum": "minimum", "upstairs": "downstairs",
    "entrance": "exit", "import": "export", "increase": "decrease", "inhale": "exhale", "major": "minor",
}

REGULAR_NOUNS = """
cat dog book car tree bird house apple table chair pen pencil cup door window flower river mountain road
star girl boy friend hand eye ear nose room shoe hat coat bag ball toy bed lamp clock phone desk computer
shirt sock cake cookie egg lemon orange banana carrot flag key ring rock ship boat train plane truck bike
farm barn field hill lake island forest garden street town king queen doctor teacher student farmer singer
player horse cow pig goat duck frog snake tiger lion monkey rabbit camel bear shark whale zebra spider
ant bee worm cloud song game word letter name door drum bell cap map cup kite nest seed plant rose
""".split()

ES_NOUNS = {"box": "boxes", "bus": "buses", "church": "churches", "glass": "glasses", "dish": "dishes",
            "brush": "brushes", "watch": "watches", "fox": "foxes", "kiss": "kisses", "class": "classes",
            "bench": "benches", "peach": "peaches", "dress": "dresses", "match": "matches", "wish": "wishes"}
Y_NOUNS = {"baby": "babies", "city": "cities", "story": "stories", "lady": "ladies", "party": "parties",
           "family": "families", "puppy": "puppies", "cherry": "cherries", "country": "countries", "berry": "berries"}
IRREGULAR_PLURALS = {"mouse": "mice", "child": "children", "foot": "feet", "tooth": "teeth", "man": "men",
                     "woman": "women", "person": "people", "knife": "knives", "leaf": "leaves", "wolf": "wolves",
                     "fish": "fish", "half": "halves", "life": "lives", "wife": "wives"}

REGULAR_VERBS = """
walk talk play jump cook clean open look help call ask work want wash watch kick paint climb laugh listen
visit start finish pull push turn rain learn plant point fill kill miss pass pick rest wish touch thank
""".split()

WORDS = """
banana table garden rocket pencil window castle dragon elephant guitar jacket kitchen lemon monkey orange
planet rabbit sunset tiger umbrella violin winter yellow zebra bridge candle doctor forest hammer mountain
apple basket button camera cookie desert dinner feather flower giraffe hotel island jungle kettle ladder
letter magnet market mirror number ocean parrot pepper pillow pocket puzzle rainbow river saddle school
shadow silver spider summer sweater teacher ticket tomato tunnel turtle valley wallet water wizard
blanket bottle butter carpet cherry circle cotton dancer engine finger garlic hunter insect jelly lizard
marble meadow muffin napkin needle palace peanut picnic pirate potato rabbit ribbon salad sandwich
soldier statue sugar tablet thunder toilet travel velvet wagon whistle window yogurt
""".split()

PHRASES = ["good morning", "thank you", "happy birthday", "see you later", "good night", "hello world",
           "blue sky", "red apple", "green grass", "big house", "little cat", "cold water", "hot tea",
           "good luck", "well done", "nice to meet you", "have a nice day", "open the door", "the cat sat",
           "one two three", "sunny day", "fresh bread", "happy new year", "merry christmas", "bon voyage"]

ANIMAL_YOUNG = {"cat": "kitten", "dog": "puppy|pup", "cow": "calf", "sheep": "lamb", "horse": "foal|colt|filly",
                "duck": "duckling", "goat": "kid", "pig": "piglet", "frog": "tadpole", "bear": "cub",
                "lion": "cub", "tiger": "cub", "kangaroo": "joey", "hen": "chick", "chicken": "chick",
                "goose": "gosling", "swan": "cygnet", "deer": "fawn", "owl": "owlet", "elephant": "calf",
                "whale": "calf", "fox": "kit|cub", "butterfly": "caterpillar|larva", "wolf": "pup|cub"}

ANIMAL_SOUNDS = {"cow": "moo", "dog": "woof|bark", "cat": "meow|miaow|purr", "duck": "quack", "pig": "oink",
                 "sheep": "baa", "lion": "roar", "snake": "hiss", "horse": "neigh", "owl": "hoot", "bee": "buzz",
                 "mouse": "squeak", "frog": "croak|ribbit", "rooster": "cock-a-doodle-doo|crow", "wolf": "howl",
                 "donkey": "hee-haw|bray", "goat": "bleat|baa", "bird": "tweet|chirp|sing", "hen": "cluck"}

ANIMAL_HOMES = {"bee": "hive", "bird": "nest", "dog": "kennel|doghouse", "rabbit": "burrow|warren|hutch",
                "spider": "web", "horse": "stable", "pig": "sty|pigsty|pen", "lion": "den", "fox": "den",
                "fish": "water|sea|ocean|river|pond", "bear": "den|cave", "ant": "anthill|colony|nest", "cow": "barn"}

COLOURS = {"the sky on a clear day": "blue", "grass": "green", "snow": "white", "a banana": "yellow",
           "coal": "black", "a ripe tomato": "red", "milk": "white", "a lemon": "yellow", "blood": "red",
           "a carrot": "orange", "the sun": "yellow", "chocolate": "brown", "a strawberry": "red",
           "a lime": "green", "a frog": "green", "the sea": "blue", "an elephant": "grey|gray", "a crow": "black",
           "a polar bear": "white", "salt": "white", "a pumpkin": "orange", "a fire truck": "red",
           "a cucumber": "green", "an emerald": "green", "a ruby": "red", "a sapphire": "blue", "a swan": "white",
           "a stop sign": "red", "a school bus": "yellow", "the night sky": "black|dark", "a cloud": "white|grey|gray",
           "charcoal": "black", "a flamingo": "pink", "an eggplant": "purple", "a plum": "purple",
           "tree bark": "brown", "soil": "brown", "a penguin's belly": "white", "broccoli": "green", "ivory": "white"}

BODY = {"see": "eyes|eye", "hear": "ears|ear", "smell": "nose", "taste": "tongue|mouth", "walk": "legs|feet|foot",
        "think": "brain", "chew food": "teeth|mouth", "write": "hand|hands|fingers", "breathe": "lungs|nose",
        "kick a ball": "foot|feet|leg", "clap": "hands", "wave goodbye": "hand", "smile": "mouth|lips",
        "pump blood": "heart", "digest food": "stomach"}

LEGS = {"a dog": "4", "a cat": "4", "a horse": "4", "a cow": "4", "a spider": "8", "a bird": "2",
        "a chicken": "2", "a human": "2", "a duck": "2", "an ant": "6", "a bee": "6", "an octopus": "8",
        "a snake": "0", "a fish": "0", "a sheep": "4", "a lion": "4"}

SHAPES = {"triangle": "3", "square": "4", "rectangle": "4", "pentagon": "5", "hexagon": "6", "octagon": "8"}

# "Answer with one word: ..." questions with a plain answer
ONE_WORD = [
    ("what do bees make?", "honey"), ("what do cows give us to drink?", "milk"), ("what do chickens lay?", "eggs|egg"),
    ("what do you use to cut paper?", "scissors"), ("what do you wear on your feet?", "shoes|socks"),
    ("what do you use to open a locked door?", "key"), ("what do you sleep in at night?", "bed"),
    ("what do you brush your teeth with?", "toothbrush"), ("what shines in the sky at night?", "moon|stars"),
    ("what shines in the sky during the day?", "sun"), ("what do pandas eat?", "bamboo"),
    ("what do monkeys like to eat?", "bananas|banana"), ("what do rabbits like to eat?", "carrots|carrot|grass"),
    ("what do cats like to chase?", "mice|mouse"), ("what falls from the sky when it rains?", "rain|water|raindrops"),
    ("what do you call frozen water?", "ice"), ("what do we breathe?", "air|oxygen"), ("what do fish swim in?", "water"),
    ("what is the meal eaten in the morning?", "breakfast"), ("what is the meal eaten in the evening?", "dinner|supper"),
    ("what do you call a person who teaches?", "teacher"), ("what do you call a person who flies a plane?", "pilot"),
    ("what do you call a person who cooks food in a restaurant?", "chef|cook"), ("what do you call a doctor for animals?", "vet|veterinarian"),
    ("what do you call a person who puts out fires?", "firefighter|fireman"), ("what do you use to take a photo?", "camera|phone"),
    ("what do you use to write on paper?", "pen|pencil"), ("what do you drink when you are thirsty?", "water"),
    ("what insect makes a web?", "spider"), ("what do caterpillars turn into?", "butterflies|butterfly|moths"),
    ("what instrument has black and white keys?", "piano"), ("what sport is played at Wimbledon?", "tennis"),
    ("what holiday is celebrated on December 25?", "Christmas"), ("what is the day after today called?", "tomorrow"),
    ("what is the day before today called?", "yesterday"), ("what fruit is red and keeps the doctor away?", "apple"),
    ("what do you call a house made of ice?", "igloo"), ("what do you call a baby cat?", "kitten"),
    ("what do you call a baby dog?", "puppy|pup"), ("what do plants need to grow?", "water|sunlight|light|sun"),
    ("what do you wear on your head?", "hat|cap|helmet"), ("what do you use to eat soup?", "spoon"),
    ("what do you use to dig a hole?", "shovel|spade"), ("what do birds use to fly?", "wings"),
    ("what do you call the season after winter?", "spring"), ("what do you call the season after summer?", "autumn|fall"),
    ("what is the opposite of day?", "night"), ("what animal is known as the king of the jungle?", "lion"),
    ("what is the biggest animal in the sea?", "whale"), ("what animal has a very long neck?", "giraffe"),
    ("what animal has a trunk?", "elephant"), ("what animal has black and white stripes?", "zebra"),
    ("what animal carries its house on its back?", "snail|turtle|tortoise"), ("what bird cannot fly and lives in Antarctica?", "penguin"),
    ("what animal hops and has a pouch?", "kangaroo"), ("what do you use to see in the dark?", "torch|flashlight|light|lamp"),
    ("what do you put on a letter before you post it?", "stamp"), ("what is the colour of grass?", "green"),
    ("what is the colour of the sky?", "blue"), ("what is the largest planet in our solar system?", "Jupiter"),
    ("which planet do we live on?", "Earth"), ("which planet is called the Red Planet?", "Mars"),
    ("what is the largest ocean on Earth?", "Pacific"), ("what is the tallest mountain in the world?", "Everest"),
    ("what is the longest river in Africa?", "Nile"), ("which gas do humans need to breathe?", "oxygen"),
    ("what organ pumps blood through the body?", "heart"), ("what organ do we think with?", "brain"),
    ("who wrote Romeo and Juliet?", "Shakespeare"), ("who painted the Mona Lisa?", "Leonardo|da Vinci"),
    ("what currency is used in the United States?", "dollar|dollars"), ("what currency is used in Japan?", "yen"),
    ("what is the first month of the year?", "January"), ("what is the last month of the year?", "December"),
    ("what is the first day of the week?", "Monday|Sunday"), ("what is the main ingredient of bread?", "flour|wheat"),
]

# yes/no questions with a clear answer, balanced
YES_NO = [
    ("Is the sun hot?", "yes"), ("Is ice cold?", "yes"), ("Is water wet?", "yes"), ("Can fish swim?", "yes"),
    ("Can birds fly?", "yes"), ("Is the sky blue on a clear day?", "yes"), ("Do cats have tails?", "yes"),
    ("Is an elephant bigger than a mouse?", "yes"), ("Is Paris in France?", "yes"), ("Do cows eat grass?", "yes"),
    ("Is a banana a fruit?", "yes"), ("Is a carrot a vegetable?", "yes"), ("Is a dog an animal?", "yes"),
    ("Is the Earth round?", "yes"), ("Do plants need water?", "yes"), ("Is snow white?", "yes"),
    ("Is the moon made of cheese?", "no"), ("Can a dog fly?", "no"), ("Is fire cold?", "no"),
    ("Is a mouse bigger than an elephant?", "no"), ("Do fish live in trees?", "no"), ("Is ice hot?", "no"),
    ("Can a cat speak English?", "no"), ("Is the sun a planet?", "no"), ("Is Paris in Germany?", "no"),
    ("Do cows lay eggs?", "no"), ("Is a tomato blue?", "no"), ("Can a car swim?", "no"),
    ("Is London in Japan?", "no"), ("Do snakes have legs?", "no"), ("Is grass purple?", "no"),
    ("Can humans breathe underwater without help?", "no"),
]

# "Which is bigger/..., A or B?" with the right option first in the answer; checked by `choice`
WHICH = [
    ("Which is bigger, an elephant or a mouse?", "elephant"), ("Which is hotter, fire or ice?", "fire"),
    ("Which is bigger, the sun or the moon?", "sun"), ("Which is faster, a car or a bicycle?", "car"),
    ("Which is heavier, a car or a feather?", "car"), ("Which is colder, ice or fire?", "ice"),
    ("Which is taller, a giraffe or a dog?", "giraffe"), ("Which can fly, a bird or a fish?", "bird"),
    ("Which lives in water, a fish or a cat?", "fish"), ("Which is a fruit, an apple or a carrot?", "apple"),
    ("Which is a vegetable, a carrot or an apple?", "carrot"), ("Which is an animal, a dog or a chair?", "dog"),
    ("Which is a colour, red or table?", "red"), ("Which is a planet, Mars or Paris?", "Mars"),
    ("Which is a city, London or Jupiter?", "London"), ("Which is bigger, a whale or a fish?", "whale"),
    ("Which is smaller, an ant or a horse?", "ant"), ("Which is slower, a snail or a horse?", "snail"),
]

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# earlier candidates: mixed facts (kept; the build keeps those the core answers robustly)
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
