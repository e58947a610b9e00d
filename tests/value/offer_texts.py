"""Titles and descriptions for the simulator's offers (the simulator's offers have none),
and a paraphrase of each, for measurements of cold start from text.

Offer *k* of :class:`bandit.demo.simulator.World` has category ``CATEGORIES[k % 6]``;
its text is product ``k // 6`` of that category. The paraphrase says the same thing in
other words, keeping at most the product's key noun, as a near-copy of the offer would.
"""

from __future__ import annotations

from bandit.demo.simulator import SimOffer

# category → [((title, description), (paraphrased title, paraphrased description)), ...]
Text = tuple[str, str]
PRODUCTS: dict[str, list[tuple[Text, Text]]] = {
    "travel": [
        (("City breaks in Rome", "Flights and a central hotel for a weekend in Rome"),
         ("Weekend getaway to Rome", "Return airfare and a hotel stay in the Italian "
          "capital")),
        (("Ski holidays in the Alps", "A week of skiing with lift pass and chalet"),
         ("Alpine winter sports trip", "Seven days on the slopes, mountain lodge included")),
        (("Beach resorts in Spain", "All-inclusive seaside hotels on the Costa del Sol"),
         ("Spanish coast holiday", "Sunny stay by the sea in Andalusia, meals included")),
        (("Cheap flights across Europe", "Low-cost airline fares to fifty cities"),
         ("Budget European air travel", "Discount plane tickets to dozens of destinations")),
    ],
    "finance": [
        (("Zero-fee stock trading", "Invest in shares and ETFs without commission"),
         ("Commission-free investing app", "Buy equities and index funds, no charges")),
        (("Cashback credit card", "Earn two percent back on every purchase"),
         ("Card that pays you back", "Money returned each time you shop with it")),
        (("Personal loan at low interest", "Borrow up to twenty thousand euros, fixed rate"),
         ("Cheap fixed-rate borrowing", "Affordable credit for your plans, stable monthly "
          "repayments")),
        (("High-interest savings account", "Grow your savings with a better rate"),
         ("Savings account with a top interest rate", "Make your deposits earn more, "
          "withdraw anytime")),
    ],
    "games": [
        (("Fantasy role-playing game", "Explore an open world of dragons and magic"),
         ("Epic RPG adventure", "Quest through a vast realm of wizards and monsters")),
        (("Puzzle game for your phone", "Hundreds of brain-teasing levels, free to play"),
         ("Puzzle app for smartphones", "Brain teasers for your mobile, hundreds of "
          "levels at no cost")),
        (("Football manager simulation", "Lead your club to the league title"),
         ("Soccer team management sim", "Take your squad to championship glory")),
        (("Online multiplayer shooter", "Team battles with friends every night"),
         ("Competitive online FPS", "Squad combat against players worldwide")),
    ],
    "fashion": [
        (("Summer dresses sale", "Light floral dresses at half price"),
         ("Discounted sundresses", "Airy flower-print frocks, fifty percent off")),
        (("Running shoes", "Lightweight trainers for road and trail"),
         ("Sneakers for joggers", "Featherweight footwear for pavement and off-road runs")),
        (("Designer handbags", "Leather bags from Italian fashion houses"),
         ("Luxury purses", "Premium leather accessories by top Milan labels")),
        (("Winter coats", "Warm down jackets and wool coats"),
         ("Cold-weather outerwear", "Cosy padded parkas and woollen overcoats")),
    ],
    "food": [
        (("Pizza delivery", "Hot pizza delivered to your door in thirty minutes"),
         ("Takeaway pizzeria", "Fresh Italian pies brought to your home in half an hour")),
        (("Weekly meal kits", "Fresh ingredients and recipes for five dinners"),
         ("Recipe box subscription", "Everything to cook five evening meals, delivered")),
        (("Organic grocery box", "Seasonal fruit and vegetables from local farms"),
         ("Farm-fresh produce crate", "Pesticide-free greens and apples grown nearby")),
        (("Sushi restaurant voucher", "Dinner for two at a Japanese restaurant"),
         ("Japanese dining gift card", "An evening meal for a couple, sashimi and rolls")),
    ],
    "tech": [
        (("Noise-cancelling headphones", "Wireless over-ear headphones, long battery life"),
         ("Bluetooth ANC headset", "Cordless earphones that block out sound for hours")),
        (("Budget smartphone", "A capable Android phone for under two hundred euros"),
         ("Affordable mobile phone", "Good Android handset at a low price")),
        (("Laptop for students", "Light thirteen-inch notebook with all-day battery"),
         ("Portable computer for university", "Slim notebook PC that lasts a full day")),
        (("Smart home speaker", "Voice assistant that plays music and controls your lights"),
         ("Voice-controlled speaker", "Talk to it to stream songs and dim the lamps")),
    ],
}


def _product(offer: SimOffer, index: int) -> tuple[Text, Text]:
    products = PRODUCTS[offer.category]
    return products[index % len(products)]


def offer_index(offer_id: str) -> int:
    return int(offer_id.rsplit("-", 1)[1])


def text_of(offer: SimOffer) -> Text:
    """The (title, description) of a simulator offer (by its id's number)."""
    return _product(offer, offer_index(offer.id) // 6)[0]


def paraphrase_of(original: SimOffer) -> Text:
    """The (title, description) of a near-copy of ``original``: the same product in
    other words."""
    return _product(original, offer_index(original.id) // 6)[1]
