"""The demo business loaded by ``mercato demo`` and ``mercato seed``.

A coffee, tea and apparel brand selling in Japan, Germany, Singapore, Vietnam and the
US through web stores, an app, store POS, a marketplace and a call centre.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mercato.auth import service as auth_service
from mercato.auth.permissions import Role
from mercato.auth.principal import Principal
from mercato.db import Database
from mercato.locations import service as locations_service
from mercato.locations.schemas import Address, Capabilities, LocationIn, LocationType

OWNER_EMAIL = "owner@mercato.example"

STORE_HOURS = {
    day: [["10:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")
} | {"sun": [["11:00", "18:00"]]}

# code, name, type, city, country, tz, lat, lng, capabilities, daily capacity
LOCATIONS: list[tuple[str, str, LocationType, str, str, str, float, float, dict[str, bool], int]] = [
    ("WH-TYO", "Tokyo fulfilment centre", LocationType.WAREHOUSE, "Koto, Tokyo", "JP", "Asia/Tokyo", 35.6495, 139.8167, {"ship": True, "returns": True}, 5000),
    ("WH-FRA", "Frankfurt fulfilment centre", LocationType.WAREHOUSE, "Frankfurt am Main", "DE", "Europe/Berlin", 50.0379, 8.5622, {"ship": True, "returns": True}, 8000),
    ("WH-SIN", "Singapore hub", LocationType.WAREHOUSE, "Tuas", "SG", "Asia/Singapore", 1.3294, 103.6406, {"ship": True, "returns": True}, 3000),
    ("WH-NJ", "New Jersey warehouse", LocationType.WAREHOUSE, "Newark", "US", "America/New_York", 40.7357, -74.1724, {"ship": True, "returns": True}, 6000),
    ("ST-SHIBUYA", "Shibuya store", LocationType.STORE, "Shibuya, Tokyo", "JP", "Asia/Tokyo", 35.6595, 139.7005, {"pickup": True, "ship_from_store": True, "returns": True}, 150),
    ("ST-OSAKA", "Osaka Umeda store", LocationType.STORE, "Osaka", "JP", "Asia/Tokyo", 34.7025, 135.4959, {"pickup": True, "ship_from_store": True, "returns": True}, 120),
    ("ST-BERLIN", "Berlin Mitte store", LocationType.STORE, "Berlin", "DE", "Europe/Berlin", 52.5270, 13.4020, {"pickup": True, "ship_from_store": True, "returns": True}, 150),
    ("ST-MUNICH", "Munich Marienplatz store", LocationType.STORE, "München", "DE", "Europe/Berlin", 48.1374, 11.5755, {"pickup": True, "ship_from_store": True, "returns": True}, 120),
    ("ST-HAMBURG", "Hamburg store", LocationType.STORE, "Hamburg", "DE", "Europe/Berlin", 53.5511, 9.9937, {"pickup": True, "returns": True}, 100),
    ("ST-ORCHARD", "Orchard Road store", LocationType.STORE, "Singapore", "SG", "Asia/Singapore", 1.3048, 103.8318, {"pickup": True, "ship_from_store": True, "returns": True}, 150),
    ("ST-HANOI", "Hanoi Old Quarter store", LocationType.STORE, "Hà Nội", "VN", "Asia/Ho_Chi_Minh", 21.0340, 105.8500, {"pickup": True, "ship_from_store": True, "returns": True}, 100),
    ("ST-SAIGON", "Saigon District 1 store", LocationType.STORE, "Hồ Chí Minh", "VN", "Asia/Ho_Chi_Minh", 10.7769, 106.7009, {"pickup": True, "ship_from_store": True, "returns": True}, 100),
    ("ST-NYC", "New York SoHo store", LocationType.STORE, "New York", "US", "America/New_York", 40.7233, -74.0030, {"pickup": True, "returns": True}, 120),
    ("DS-DALAT", "Da Lat roastery (dropship)", LocationType.DROPSHIP, "Đà Lạt", "VN", "Asia/Ho_Chi_Minh", 11.9404, 108.4583, {"ship": True}, 400),
]


@dataclass
class DemoCredentials:
    staff_email: str
    staff_password: str
    channel_keys: dict[str, str] = field(default_factory=dict)
    other_staff: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "staff_email": self.staff_email,
            "staff_password": self.staff_password,
            "channel_keys": self.channel_keys,
            "other_staff": self.other_staff,
        }


def _locations(session: Session, actor: Principal) -> dict[str, int]:
    ids: dict[str, int] = {}
    for code, name, kind, city, country, tz, lat, lng, caps, capacity in LOCATIONS:
        location = locations_service.create_location(
            session,
            actor,
            LocationIn(
                code=code,
                name=name,
                type=kind,
                address=Address(city=city, country=country),
                timezone=tz,
                latitude=lat,
                longitude=lng,
                opening_hours=STORE_HOURS if kind is LocationType.STORE else {},
                capabilities=Capabilities(**caps),
                daily_capacity=capacity,
            ),
        )
        ids[code] = location.id
    return ids
