"""A generated demo catalog: deterministic, translated, a few hundred products.

The demo ships its own catalog so that ``mercato demo`` needs nothing outside the
package. Names are composed from small word tables that carry their own translations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

LOCALES = ("ja", "de", "vi")


@dataclass(frozen=True)
class Word:
    en: str
    ja: str
    de: str
    vi: str

    def get(self, locale: str) -> str:
        return str(getattr(self, locale))


@dataclass
class DemoCategory:
    code: str
    name: Word
    parent: str | None = None


@dataclass
class DemoVariant:
    sku: str
    barcode: str
    options: dict[str, str]
    weight_g: int
    dimensions_mm: tuple[int, int, int]


@dataclass
class DemoProduct:
    code: str
    category: str
    name: dict[str, str]
    description: dict[str, str]
    tax_class: str
    hs_code: str
    origin: str
    base_price: int  # in euro cents; the pricing domain converts per market
    variants: list[DemoVariant] = field(default_factory=list)
    media: list[str] = field(default_factory=list)


CATEGORIES = [
    DemoCategory("coffee", Word("Coffee", "コーヒー", "Kaffee", "Cà phê")),
    DemoCategory(
        "organic-coffee-beans",
        Word(
            "Organic coffee beans",
            "オーガニックコーヒー豆",
            "Bio-Kaffeebohnen",
            "Cà phê hạt hữu cơ",
        ),
        "coffee",
    ),
    DemoCategory(
        "ground-coffee",
        Word("Ground coffee", "挽いたコーヒー", "Gemahlener Kaffee", "Cà phê xay"),
        "coffee",
    ),
    DemoCategory("tea", Word("Tea", "お茶", "Tee", "Trà")),
    DemoCategory("apparel", Word("Apparel", "アパレル", "Bekleidung", "Thời trang")),
    DemoCategory("t-shirts", Word("T-shirts", "Tシャツ", "T-Shirts", "Áo thun"), "apparel"),
    DemoCategory("hoodies", Word("Hoodies", "パーカー", "Kapuzenpullover", "Áo hoodie"), "apparel"),
    DemoCategory("socks", Word("Socks", "靴下", "Socken", "Tất"), "apparel"),
    DemoCategory("home", Word("Home", "ホーム", "Wohnen", "Nhà cửa")),
    DemoCategory("mugs", Word("Mugs", "マグカップ", "Becher", "Cốc"), "home"),
    DemoCategory("brewing", Word("Brewing gear", "抽出器具", "Zubereitung", "Dụng cụ pha"), "home"),
    DemoCategory("bags", Word("Bags", "バッグ", "Taschen", "Túi"), "apparel"),
]

ORIGINS = [
    Word(
        "Ethiopian Yirgacheffe",
        "エチオピア・イルガチェフェ",
        "Äthiopischer Yirgacheffe",
        "Ethiopia Yirgacheffe",
    ),
    Word("Colombian Huila", "コロンビア・ウイラ", "Kolumbianischer Huila", "Colombia Huila"),
    Word("Vietnamese Da Lat", "ベトナム・ダラット", "Vietnamesischer Da Lat", "Đà Lạt Việt Nam"),
    Word(
        "Guatemalan Antigua",
        "グアテマラ・アンティグア",
        "Guatemaltekischer Antigua",
        "Guatemala Antigua",
    ),
    Word("Kenyan Nyeri", "ケニア・ニエリ", "Kenianischer Nyeri", "Kenya Nyeri"),
    Word("Sumatran Mandheling", "スマトラ・マンデリン", "Sumatra Mandheling", "Sumatra Mandheling"),
    Word("Brazilian Cerrado", "ブラジル・セラード", "Brasilianischer Cerrado", "Brazil Cerrado"),
    Word("Peruvian Cajamarca", "ペルー・カハマルカ", "Peruanischer Cajamarca", "Peru Cajamarca"),
    Word(
        "Honduran Marcala", "ホンジュラス・マルカラ", "Honduranischer Marcala", "Honduras Marcala"
    ),
    Word(
        "Rwandan Nyamasheke",
        "ルワンダ・ニャマシェケ",
        "Ruandischer Nyamasheke",
        "Rwanda Nyamasheke",
    ),
]
ROASTS = [
    Word("Light Roast", "浅煎り", "Helle Röstung", "Rang nhạt"),
    Word("Medium Roast", "中煎り", "Mittlere Röstung", "Rang vừa"),
    Word("Dark Roast", "深煎り", "Dunkle Röstung", "Rang đậm"),
]
TEAS = [
    Word("Sencha", "煎茶", "Sencha", "Trà Sencha"),
    Word("Genmaicha", "玄米茶", "Genmaicha", "Trà gạo rang"),
    Word("Oolong", "烏龍茶", "Oolong", "Trà Ô long"),
    Word("Lotus Tea", "蓮茶", "Lotustee", "Trà sen"),
    Word("Earl Grey", "アールグレイ", "Earl Grey", "Trà Earl Grey"),
    Word("Jasmine Green Tea", "ジャスミン緑茶", "Jasmin-Grüntee", "Trà xanh nhài"),
]
GARMENT_STYLES = [
    Word("Classic", "クラシック", "Klassisches", "Cổ điển"),
    Word("Organic Cotton", "オーガニックコットン", "Bio-Baumwoll", "Cotton hữu cơ"),
    Word("Relaxed", "リラックス", "Lockeres", "Thoải mái"),
    Word("Heavyweight", "ヘビーウェイト", "Schweres", "Dày dặn"),
    Word("Striped", "ストライプ", "Gestreiftes", "Kẻ sọc"),
    Word("Logo", "ロゴ", "Logo-", "In logo"),
    Word("Pocket", "ポケット付き", "Taschen-", "Có túi"),
    Word("Vintage", "ヴィンテージ", "Vintage-", "Cổ điển phai"),
]
GARMENTS = {
    "t-shirts": Word("T-Shirt", "Tシャツ", "T-Shirt", "Áo thun"),
    "hoodies": Word("Hoodie", "パーカー", "Kapuzenpullover", "Áo hoodie"),
    "socks": Word("Socks", "ソックス", "Socken", "Tất"),
}
COLOURS = [
    Word("Black", "ブラック", "Schwarz", "Đen"),
    Word("White", "ホワイト", "Weiß", "Trắng"),
    Word("Navy", "ネイビー", "Marineblau", "Xanh navy"),
    Word("Olive", "オリーブ", "Oliv", "Xanh ô liu"),
    Word("Red", "レッド", "Rot", "Đỏ"),
    Word("Grey", "グレー", "Grau", "Xám"),
]
HOME_ITEMS = {
    "mugs": [
        Word("Ceramic Mug", "陶器のマグカップ", "Keramikbecher", "Cốc gốm"),
        Word("Travel Mug", "トラベルマグ", "Reisebecher", "Cốc du lịch"),
        Word("Enamel Mug", "ホーローマグ", "Emaillebecher", "Cốc tráng men"),
    ],
    "brewing": [
        Word("Pour-Over Dripper", "ハンドドリッパー", "Handfilter", "Phễu pha cà phê"),
        Word("French Press", "フレンチプレス", "French Press", "Bình ép Pháp"),
        Word("Phin Filter", "ベトナムコーヒーフィルター", "Phin-Filter", "Phin cà phê"),
        Word("Burr Grinder", "コーヒーミル", "Kaffeemühle", "Máy xay cà phê"),
        Word("Gooseneck Kettle", "細口ケトル", "Schwanenhalskessel", "Ấm rót cổ ngỗng"),
    ],
    "bags": [
        Word("Canvas Tote", "キャンバストート", "Canvas-Tasche", "Túi vải canvas"),
        Word("Coffee Sack Backpack", "麻袋リュック", "Kaffeesack-Rucksack", "Ba lô bao tải"),
    ],
}
SIZES = ["XS", "S", "M", "L", "XL"]
BAG_WEIGHTS = [("250g", 250, 1.0), ("500g", 500, 1.85), ("1kg", 1000, 3.4)]
GRINDS = [
    Word("Whole bean", "豆のまま", "Ganze Bohne", "Nguyên hạt"),
    Word("Espresso grind", "エスプレッソ挽き", "Espresso-Mahlung", "Xay espresso"),
    Word("Filter grind", "フィルター挽き", "Filter-Mahlung", "Xay pha phin"),
]

# Option names and the values that read differently in each language (sizes and
# weights such as "M" and "250g" read the same everywhere).
OPTION_NAMES = {
    "weight": Word("Weight", "内容量", "Gewicht", "Khối lượng"),
    "grind": Word("Grind", "挽き方", "Mahlgrad", "Độ xay"),
    "colour": Word("Colour", "カラー", "Farbe", "Màu"),
    "size": Word("Size", "サイズ", "Größe", "Cỡ"),
}
OPTION_VALUES = {word.en: word for word in [*GRINDS, *COLOURS]}

DESCRIPTIONS = {
    "coffee": Word(
        "Freshly roasted in small batches. Notes of {notes}.",
        "少量ずつ丁寧に焙煎。{notes}の風味。",
        "Frisch in kleinen Chargen geröstet. Noten von {notes}.",
        "Rang mộc theo mẻ nhỏ. Hương vị {notes}.",
    ),
    "tea": Word(
        "Loose-leaf tea from a single estate.",
        "単一農園のリーフティー。",
        "Loser Tee von einer einzigen Plantage.",
        "Trà lá rời từ một đồn điền.",
    ),
    "apparel": Word(
        "Made from responsibly sourced cotton.",
        "責任ある調達のコットンを使用。",
        "Aus verantwortungsvoll bezogener Baumwolle.",
        "Làm từ cotton có nguồn gốc bền vững.",
    ),
    "home": Word(
        "Designed for everyday brewing.",
        "毎日のコーヒーのためにデザイン。",
        "Für die tägliche Zubereitung entworfen.",
        "Thiết kế cho việc pha chế hằng ngày.",
    ),
}
NOTES = [
    Word(
        "chocolate and cherry",
        "チョコレートとチェリー",
        "Schokolade und Kirsche",
        "sô-cô-la và anh đào",
    ),
    Word("citrus and jasmine", "柑橘とジャスミン", "Zitrus und Jasmin", "cam chanh và hoa nhài"),
    Word(
        "caramel and hazelnut",
        "キャラメルとヘーゼルナッツ",
        "Karamell und Haselnuss",
        "caramel và hạt phỉ",
    ),
    Word(
        "blueberry and cocoa", "ブルーベリーとカカオ", "Blaubeere und Kakao", "việt quất và ca cao"
    ),
]


def _gtin13(number: int) -> str:
    """A valid EAN-13 in the 200-299 range reserved for in-store numbering."""
    body = f"2{number:011d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def _names(words: list[Word], joiner: dict[str, str] | None = None) -> dict[str, str]:
    joiner = joiner or {"en": " ", "ja": " ", "de": " ", "vi": " "}
    return {loc: joiner[loc].join(w.get(loc) for w in words) for loc in ("en", *LOCALES)}


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.products: list[DemoProduct] = []
        self._barcode = 1000

    def barcode(self) -> str:
        self._barcode += 1
        return _gtin13(self._barcode)

    def description(self, kind: str) -> dict[str, str]:
        template = DESCRIPTIONS[kind]
        notes = self.rng.choice(NOTES)
        return {loc: template.get(loc).format(notes=notes.get(loc)) for loc in ("en", *LOCALES)}

    def coffee(self) -> None:
        n = 0
        for origin in ORIGINS:
            for roast in ROASTS:
                for organic in (True, False):
                    n += 1
                    category = "organic-coffee-beans" if organic else "ground-coffee"
                    words = [origin, roast]
                    tail = Word(
                        "Organic Coffee Beans" if organic else "Ground Coffee",
                        "オーガニックコーヒー豆" if organic else "挽いたコーヒー",
                        "Bio-Kaffeebohnen" if organic else "Gemahlener Kaffee",
                        "Cà phê hạt hữu cơ" if organic else "Cà phê xay",
                    )
                    code = f"COF-{n:03d}"
                    product = DemoProduct(
                        code=code,
                        category=category,
                        name=_names([*words, tail]),
                        description=self.description("coffee"),
                        tax_class="food",
                        hs_code="090121",
                        origin=self.rng.choice(["ET", "CO", "VN", "GT", "KE", "ID", "BR", "PE"]),
                        base_price=self.rng.choice([1190, 1290, 1490, 1690]),
                        media=[f"https://media.mercato.example/{code.lower()}.jpg"],
                    )
                    grinds = GRINDS[:1] if organic else GRINDS[1:]
                    for label, grams, _factor in BAG_WEIGHTS:
                        for grind in grinds:
                            product.variants.append(
                                DemoVariant(
                                    sku=f"{code}-{label.upper()}-{grind.en[:3].upper()}",
                                    barcode=self.barcode(),
                                    options={"weight": label, "grind": grind.en},
                                    weight_g=grams + 20,
                                    dimensions_mm=(90, 60, 200 if grams < 1000 else 280),
                                )
                            )
                    self.products.append(product)

    def tea(self) -> None:
        for n, tea in enumerate(TEAS * 3, start=1):
            grade = ["", "Premium ", "Ceremonial "][(n - 1) // len(TEAS)]
            grade_word = Word(
                grade.strip() or "Daily",
                ["普段使い", "プレミアム", "特上"][(n - 1) // len(TEAS)],
                ["Alltags-", "Premium-", "Zeremonieller"][(n - 1) // len(TEAS)],
                ["Hằng ngày", "Cao cấp", "Thượng hạng"][(n - 1) // len(TEAS)],
            )
            code = f"TEA-{n:03d}"
            product = DemoProduct(
                code=code,
                category="tea",
                name=_names([grade_word, tea]),
                description=self.description("tea"),
                tax_class="food",
                hs_code="090210",
                origin=self.rng.choice(["JP", "CN", "VN", "IN", "TW"]),
                base_price=self.rng.choice([690, 890, 1290, 2490]),
            )
            for label, grams in (("50g", 50), ("100g", 100)):
                product.variants.append(
                    DemoVariant(
                        f"{code}-{label.upper()}",
                        self.barcode(),
                        {"weight": label},
                        grams + 10,
                        (70, 40, 120),
                    )
                )
            self.products.append(product)

    def apparel(self) -> None:
        n = 0
        for category, garment in GARMENTS.items():
            for style in GARMENT_STYLES:
                for colour_group in (COLOURS[:3], COLOURS[3:]):
                    n += 1
                    code = f"APP-{n:03d}"
                    product = DemoProduct(
                        code=code,
                        category=category,
                        name=_names([style, garment]),
                        description=self.description("apparel"),
                        tax_class="standard",
                        hs_code="610910"
                        if category == "t-shirts"
                        else "611020"
                        if category == "hoodies"
                        else "611595",
                        origin=self.rng.choice(["PT", "VN", "BD", "TR"]),
                        base_price={"t-shirts": 2490, "hoodies": 5990, "socks": 990}[category],
                    )
                    sizes = SIZES if category != "socks" else ["S", "M", "L"]
                    for colour in colour_group:
                        for size in sizes:
                            product.variants.append(
                                DemoVariant(
                                    sku=f"{code}-{colour.en[:3].upper()}-{size}",
                                    barcode=self.barcode(),
                                    options={"colour": colour.en, "size": size},
                                    weight_g={"t-shirts": 180, "hoodies": 650, "socks": 60}[
                                        category
                                    ],
                                    dimensions_mm=(300, 250, 30),
                                )
                            )
                    self.products.append(product)

    def home(self) -> None:
        n = 0
        for category, items in HOME_ITEMS.items():
            for item in items:
                for edition in ("", "Studio ", "Limited "):
                    n += 1
                    code = f"HOM-{n:03d}"
                    edition_word = Word(
                        edition.strip() or "Everyday",
                        ["デイリー", "スタジオ", "限定"][
                            ("", "Studio ", "Limited ").index(edition)
                        ],
                        ["Alltags-", "Studio-", "Limitierter"][
                            ("", "Studio ", "Limited ").index(edition)
                        ],
                        ["Hằng ngày", "Studio", "Giới hạn"][
                            ("", "Studio ", "Limited ").index(edition)
                        ],
                    )
                    product = DemoProduct(
                        code=code,
                        category=category,
                        name=_names([edition_word, item]),
                        description=self.description("home"),
                        tax_class="standard",
                        hs_code="691200"
                        if category == "mugs"
                        else "841981"
                        if category == "brewing"
                        else "420292",
                        origin=self.rng.choice(["JP", "DE", "VN", "CN"]),
                        base_price=self.rng.choice([1490, 2490, 3990, 7990]),
                    )
                    for colour in COLOURS[: self.rng.randint(1, 4)]:
                        product.variants.append(
                            DemoVariant(
                                f"{code}-{colour.en[:3].upper()}",
                                self.barcode(),
                                {"colour": colour.en},
                                400,
                                (120, 120, 150),
                            )
                        )
                    self.products.append(product)


def build_catalog(seed: int = 42, copies: int = 2) -> tuple[list[DemoCategory], list[DemoProduct]]:
    """Categories and products. ``copies`` repeats the range with new codes to scale it up."""
    builder = _Builder(seed)
    for _ in range(copies):
        start = len(builder.products)
        builder.coffee()
        builder.tea()
        builder.apparel()
        builder.home()
        if start:
            _renumber(builder.products[start:], suffix=f"S{start}")
    return CATEGORIES, builder.products


def _renumber(products: list[DemoProduct], suffix: str) -> None:
    season = {
        "en": "Season Edition",
        "ja": "シーズン限定",
        "de": "Saisonedition",
        "vi": "Phiên bản mùa",
    }
    for product in products:
        product.code = f"{product.code}-{suffix}"
        product.name = {loc: f"{name} ({season[loc]})" for loc, name in product.name.items()}
        for variant in product.variants:
            variant.sku = f"{variant.sku}-{suffix}"


def as_import_records(products: list[DemoProduct]) -> list[dict[str, Any]]:
    """The products in Mercato's JSON import shape (see ``catalog.importexport``)."""
    records = []
    for p in products:
        records.append(
            {
                "product_code": p.code,
                "name": p.name["en"],
                "description": p.description["en"],
                "status": "active",
                "tax_class": p.tax_class,
                "category_code": p.category,
                "media_urls": p.media,
                "translations": {
                    loc: {
                        "name": p.name[loc],
                        "description": p.description[loc],
                        "options": option_translations(p, loc),
                    }
                    for loc in LOCALES
                },
                "variants": [
                    {
                        "sku": v.sku,
                        "barcode": v.barcode,
                        "options": v.options,
                        "weight_g": v.weight_g,
                        "length_mm": v.dimensions_mm[0],
                        "width_mm": v.dimensions_mm[1],
                        "height_mm": v.dimensions_mm[2],
                        "hs_code": p.hs_code,
                        "country_of_origin": p.origin,
                    }
                    for v in p.variants
                ],
            }
        )
    return records


def option_translations(product: DemoProduct, locale: str) -> dict[str, Any]:
    """The product's option names and values in ``locale`` (the import's shape)."""
    translated: dict[str, Any] = {}
    for variant in product.variants:
        for name, value in variant.options.items():
            entry = translated.setdefault(name, {"name": OPTION_NAMES[name].get(locale)})
            if value in OPTION_VALUES:
                entry.setdefault("values", {})[value] = OPTION_VALUES[value].get(locale)
    return translated
