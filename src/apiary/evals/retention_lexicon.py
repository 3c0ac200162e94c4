"""Word lists for `retention_candidates`: plain, well-known material a small chat model may know.

Data only. An answer with "|" lists acceptable alternatives (the `word` and `choice` checkers
accept any of them). Kept apart from the generators so each reads on its own.
"""

from __future__ import annotations

# country: (capital, language, continent); "" where none is asked
COUNTRIES = {
    "France": ("Paris", "French", "Europe"), "Italy": ("Rome", "Italian", "Europe"),
    "Japan": ("Tokyo", "Japanese", "Asia"), "Germany": ("Berlin", "German", "Europe"),
    "Spain": ("Madrid", "Spanish", "Europe"), "England": ("London", "English", "Europe"),
    "Russia": ("Moscow", "Russian", "Europe|Asia"), "China": ("Beijing", "Chinese|Mandarin", "Asia"),
    "Egypt": ("Cairo", "Arabic", "Africa"), "Canada": ("Ottawa", "English|French", "North America"),
    "Greece": ("Athens", "Greek", "Europe"), "Portugal": ("Lisbon", "Portuguese", "Europe"),
    "Austria": ("Vienna", "German", "Europe"), "Ireland": ("Dublin", "English|Irish", "Europe"),
    "Norway": ("Oslo", "Norwegian", "Europe"), "Sweden": ("Stockholm", "Swedish", "Europe"),
    "Finland": ("Helsinki", "Finnish", "Europe"), "Hungary": ("Budapest", "Hungarian", "Europe"),
    "Belgium": ("Brussels", "", "Europe"), "the Netherlands": ("Amsterdam", "Dutch", "Europe"),
    "Thailand": ("Bangkok", "Thai", "Asia"), "South Korea": ("Seoul", "Korean", "Asia"),
    "Kenya": ("Nairobi", "Swahili|English", "Africa"), "Argentina": ("Buenos Aires", "Spanish", "South America"),
    "Peru": ("Lima", "Spanish", "South America"), "Cuba": ("Havana", "Spanish", "North America"),
    "Mexico": ("Mexico City", "Spanish", "North America"), "Iran": ("Tehran", "Persian|Farsi", "Asia"),
    "Iraq": ("Baghdad", "Arabic", "Asia"), "Australia": ("Canberra", "English", "Australia|Oceania"),
    "Brazil": ("Brasilia", "Portuguese", "South America"), "Chile": ("Santiago", "Spanish", "South America"),
    "Colombia": ("Bogota", "Spanish", "South America"), "Vietnam": ("Hanoi", "Vietnamese", "Asia"),
    "the Philippines": ("Manila", "Filipino|Tagalog|English", "Asia"), "Indonesia": ("Jakarta", "Indonesian", "Asia"),
    "Scotland": ("Edinburgh", "English", "Europe"), "Czechia": ("Prague", "Czech", "Europe"),
    "Romania": ("Bucharest", "Romanian", "Europe"), "Israel": ("Jerusalem", "Hebrew", "Asia"),
    "Syria": ("Damascus", "Arabic", "Asia"), "Morocco": ("Rabat", "Arabic", "Africa"),
    "Ethiopia": ("Addis Ababa", "Amharic", "Africa"), "Afghanistan": ("Kabul", "", "Asia"),
    "Malaysia": ("Kuala Lumpur", "Malay", "Asia"), "New Zealand": ("Wellington", "English", "Oceania|Australia"),
    "Iceland": ("Reykjavik", "Icelandic", "Europe"), "Bulgaria": ("Sofia", "Bulgarian", "Europe"),
    "Poland": ("", "Polish", "Europe"), "Turkey": ("", "Turkish", "Asia|Europe"),
    "India": ("", "Hindi|English", "Asia"), "Denmark": ("", "Danish", "Europe"),
    "Nigeria": ("", "English", "Africa"), "Ghana": ("", "English", "Africa"),
    "Pakistan": ("", "Urdu|English", "Asia"), "Ukraine": ("", "Ukrainian", "Europe"),
    "Saudi Arabia": ("", "Arabic", "Asia"), "Jamaica": ("", "English", "North America"),
}

OPPOSITES = {
    "hot": "cold", "up": "down", "big": "small|little", "day": "night", "yes": "no", "left": "right", "fast": "slow",
    "happy": "sad|unhappy", "old": "new|young", "open": "closed|close|shut", "full": "empty", "light": "dark|heavy",
    "wet": "dry", "hard": "soft|easy", "high": "low", "black": "white", "good": "bad|evil", "early": "late",
    "thick": "thin", "tall": "short", "strong": "weak", "loud": "quiet|soft", "push": "pull", "buy": "sell",
    "true": "false", "heavy": "light", "inside": "outside", "top": "bottom", "north": "south", "east": "west",
    "before": "after", "always": "never", "near": "far", "summer": "winter", "boy": "girl", "king": "queen",
    "long": "short", "large": "small", "young": "old",
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
ant bee worm cloud song game word letter name drum bell cap map kite nest seed plant rose
animal answer arm artist baker balloon bank basket bean bird blanket boot bottle bowl bread brick
bucket building cake camera candle card carpet castle chicken coin cousin cow crayon crown dancer dinner
dragon dream driver eagle elephant engine farmer feather finger flower fork garage giraffe gift goal guitar
hammer helmet hotel idea insect jacket jar kitten ladder lamb lizard magnet market meal minute mirror
month monster mountain muffin nail necklace needle night number ocean office owl painter pan parrot path
peanut pillow pilot pirate pizza planet plate pocket pond pool present prince puzzle queen rabbit
rainbow river robot rocket roof sail school shell shop sister skirt snail sock soldier spoon
stamp statue stone storm sun sweater table tail teacher ticket tiger toilet tool towel tower toy
tunnel turtle uncle valley wagon wall wallet window wing wizard year zoo
""".split()

ES_NOUNS = {"box": "boxes", "bus": "buses", "church": "churches", "glass": "glasses", "dish": "dishes",
            "brush": "brushes", "watch": "watches", "fox": "foxes", "kiss": "kisses", "class": "classes",
            "bench": "benches", "peach": "peaches", "dress": "dresses", "match": "matches", "wish": "wishes",
            "beach": "beaches", "princess": "princesses", "sandwich": "sandwiches", "tomato": "tomatoes",
            "potato": "potatoes", "hero": "heroes", "lunch": "lunches", "fox": "foxes", "bush": "bushes"}
Y_NOUNS = {"baby": "babies", "city": "cities", "story": "stories", "lady": "ladies", "party": "parties",
           "family": "families", "puppy": "puppies", "cherry": "cherries", "country": "countries", "berry": "berries"}
IRREGULAR_PLURALS = {"mouse": "mice", "child": "children", "foot": "feet", "tooth": "teeth", "man": "men",
                     "woman": "women", "person": "people", "knife": "knives", "leaf": "leaves", "wolf": "wolves",
                     "fish": "fish", "half": "halves", "life": "lives", "wife": "wives"}

WORDS = """
banana table garden rocket pencil window castle dragon elephant guitar jacket kitchen lemon monkey orange
planet rabbit sunset tiger umbrella violin winter yellow zebra bridge candle doctor forest hammer mountain
apple basket button camera cookie desert dinner feather flower giraffe hotel island jungle kettle ladder
letter magnet market mirror number ocean parrot pepper pillow pocket puzzle rainbow river saddle school
shadow silver spider summer sweater teacher ticket tomato tunnel turtle valley wallet water wizard
blanket bottle butter carpet cherry circle cotton dancer engine finger garlic hunter insect jelly lizard
marble meadow muffin napkin needle palace peanut picnic pirate potato ribbon salad sandwich
soldier statue sugar tablet thunder toilet travel velvet wagon whistle yogurt
balloon bedroom biscuit blossom bucket cabbage captain carrot cinema cloud coffee copper cousin crayon
danger diamond dolphin dragonfly eagle feather festival fountain freedom gallery glitter gravel harbour
helmet holiday honey horizon jewel journey kingdom kitten lantern library lobster melody morning mustard
necklace noodle orchard panda paper parade pebble penguin pickle pizza planet plum pumpkin quilt raven
robot rooster sailor scarf season shelter sister snowman spoon squirrel stable stomach stone storm
sunflower supper temple theatre tractor treasure trumpet vanilla village volcano weather whale window
""".split()

PHRASES = ["good morning", "thank you", "happy birthday", "see you later", "good night", "hello world",
           "blue sky", "red apple", "green grass", "big house", "little cat", "cold water", "hot tea",
           "good luck", "well done", "nice to meet you", "have a nice day", "open the door", "the cat sat",
           "one two three", "sunny day", "fresh bread", "happy new year", "merry christmas", "bon voyage"]

BODY = {"see": "eyes|eye", "hear": "ears|ear", "smell": "nose", "taste": "tongue|mouth", "walk": "legs|feet|foot",
        "think": "brain", "chew food": "teeth|mouth", "write": "hand|hands|fingers", "breathe": "lungs|nose",
        "kick a ball": "foot|feet|leg", "clap": "hands", "wave goodbye": "hand", "smile": "mouth|lips",
        "pump blood": "heart", "digest food": "stomach", "listen to music": "ears|ear", "read a book": "eyes|eye",
        "hold a pen": "hand|fingers", "run": "legs|feet", "sing": "mouth|voice|throat", "speak": "mouth|tongue|voice",
        "eat": "mouth|teeth", "hug someone": "arms|arm", "nod": "head|neck", "jump": "legs|feet",
        "touch": "hands|fingers|hand|skin", "sniff a flower": "nose", "remember things": "brain", "wink": "eye|eyes"}

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
    ("what is the name of the star at the centre of our solar system?", "sun"), ("what do you call a young cat?", "kitten"),
    ("what is the capital of France?", "Paris"), ("what is the capital of Italy?", "Rome"),
    ("what is the capital of Japan?", "Tokyo"), ("what is the capital of Spain?", "Madrid"),
    ("what is the plural of child?", "children"), ("what is the plural of mouse?", "mice"),
    ("what is the opposite of hot?", "cold"), ("what is the opposite of up?", "down"),
    ("what is the opposite of big?", "small|little"), ("what is the opposite of fast?", "slow"),
    ("what is the opposite of happy?", "sad|unhappy"), ("what is the opposite of black?", "white"),
    ("what language is spoken in Germany?", "German"), ("what language is spoken in Russia?", "Russian"),
    ("what is the largest continent?", "Asia"), ("what is the name of our galaxy?", "Milky Way"),
    ("what do you call a person who helps sick people in a hospital?", "doctor|nurse"),
    ("what do you call a person who plays the piano?", "pianist"), ("what do you call a person who writes books?", "author|writer"),
    ("what do you call a person who paints pictures?", "painter|artist"), ("what do you call a person who sings?", "singer"),
    ("what do you call a person who dances?", "dancer"), ("what do you call a person who bakes bread?", "baker"),
    ("what do you call a person who grows crops?", "farmer"), ("what do you call a person who repairs cars?", "mechanic"),
    ("what do you call a person who catches fish?", "fisherman|fisher|angler"),
    ("what do you call a person who delivers letters?", "postman|mailman|postwoman|carrier"),
    ("what do you call a person who drives a bus?", "driver|bus driver"),
    ("what is the part of a tree that grows under the ground?", "roots|root"),
    ("what is the hottest season of the year?", "summer"), ("what is the coldest season of the year?", "winter"),
]



NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
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
