"""A synthetic MHLW medical institution master: realistic in shape, invented in content (pure).

``platsync master generate FILE`` writes it; the tests and the benchmark import it. Every code is valid
(prefecture, fee schedule, Luhn check digit) and unique; names, addresses, phones and people are made up from
Japanese building blocks, reproducibly from a seed. Never put real data in the repository: this is what the
tests use instead.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Iterator

from streams.master.codes import make_code
from streams.master.csv_input import COLUMNS, HEADERS, Row

PREFECTURES = ("北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県",
               "埼玉県", "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県",
               "岐阜県", "静岡県", "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県",
               "鳥取県", "島根県", "岡山県", "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県",
               "佐賀県", "長崎県", "熊本県", "大分県", "宮崎県", "鹿児島県", "沖縄県")
CITIES = ("中央区", "北区", "南区", "東区", "西区", "緑区", "青葉区", "港区", "若葉市", "桜台市", "旭町", "本町",
          "山手市", "川辺町", "松原市", "新町", "栄町", "日吉市", "花園町", "大野市")
TOWNS = ("本町", "栄", "緑が丘", "桜木町", "旭", "中町", "上野", "下田", "石川", "松島", "竹ノ塚", "梅田")
SURNAMES = ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田",
            "佐々木", "山口", "松本", "井上", "木村", "林", "斎藤", "清水")
GIVEN = ("太郎", "花子", "一郎", "美咲", "健", "陽子", "翔", "由美", "大輔", "直子")
PLACES = ("みどり", "さくら", "ひまわり", "あおば", "つばさ", "やまて", "かわべ", "ひかり", "はなぞの", "あさひ")
MEDICAL = ("{s}内科クリニック", "{p}病院", "医療法人社団{s}会 {p}病院", "{s}整形外科", "{p}こどもクリニック",
           "{s}眼科医院", "{p}総合病院", "{s}皮膚科")
DENTAL = ("{s}歯科医院", "{p}デンタルクリニック", "医療法人{s}会 {p}歯科")
PHARMACY = ("{p}薬局", "{s}調剤薬局", "{p}ファーマシー {s}店")
KINDS = (("1", MEDICAL, 0.55), ("3", DENTAL, 0.30), ("4", PHARMACY, 0.15))
DEPARTMENTS = ("内科", "外科", "小児科", "整形外科", "眼科", "皮膚科", "耳鼻咽喉科", "精神科", "歯科", "産婦人科")


def _name(rng: random.Random, patterns: tuple[str, ...]) -> str:
    return rng.choice(patterns).format(s=rng.choice(SURNAMES), p=rng.choice(PLACES))


def generate_rows(count: int, seed: int = 1) -> Iterator[Row]:
    """``count`` rows with unique valid codes, in code order per prefecture (reproducible from ``seed``)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    produced = 0
    while produced < count:
        prefecture = rng.randrange(1, 48)
        schedule, patterns, _weight = rng.choices(KINDS, weights=[k[2] for k in KINDS])[0]
        code = make_code(prefecture, schedule, rng.randrange(1, 100), rng.randrange(10_000))
        if code in seen:
            continue
        seen.add(code)
        produced += 1
        yield {
            "medical_id": code, "name": _name(rng, patterns), "name_kana": None,
            "postal_code": f"{rng.randrange(100, 1000)}-{rng.randrange(10_000):04d}",
            "address": f"{PREFECTURES[prefecture - 1]}{rng.choice(CITIES)}{rng.choice(TOWNS)}"
                       f"{rng.randrange(1, 10)}丁目{rng.randrange(1, 30)}-{rng.randrange(1, 20)}",
            "phone": f"0{rng.randrange(10, 100)}-{rng.randrange(100, 1000)}-{rng.randrange(10_000):04d}",
            "founder": f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
            "administrator": f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
            "designated_on": f"{rng.randrange(1980, 2026)}-{rng.randrange(1, 13):02d}-01",
            "beds": rng.choice((0, 0, 0, 19, 50, 120, 300)) if schedule == "1" else 0,
            "departments": "、".join(sorted(rng.sample(DEPARTMENTS, rng.randrange(1, 4))))
                           if schedule == "1" else ("歯科" if schedule == "3" else None),
        }


def changed(rows: Iterable[Row], fraction: float, seed: int = 2) -> list[Row]:
    """A copy of ``rows`` with ``fraction`` of them changed (a new administrator and phone), reproducibly."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        if rng.random() < fraction:
            row = {**row, "administrator": f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}（新任）",
                   "phone": f"0{rng.randrange(10, 100)}-{rng.randrange(100, 1000)}-{rng.randrange(10_000):04d}"}
        out.append(row)
    return out


def to_csv(rows: Iterable[Row], encoding: str = "utf-8") -> bytes:
    """The rows as a master CSV with Japanese headers, in ``encoding`` (``utf-8`` or ``cp932``)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([HEADERS[c][0] for c in COLUMNS])
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in COLUMNS])
    return out.getvalue().encode(encoding)
