"""Agency identifier codes (mã định danh) for the simulator: the 2019 axis and a national directory at any size.

Codes follow the QCVN 102:2016 form ``V1V2V3.Z1Z2.Y1Y2.XXX`` with the level-1 code on the right
(reference/edxml.md): ``000.00.00.Gxx`` a ministry-level body, ``000.00.00.Hxx`` a province,
``000.00.13.H53`` a department of province H53, ``000.07.13.H53`` a unit under it, ``012.07.13.H53`` a
commune-level unit.

Province numbers H01..H63 follow the alphabetical order of the unaccented province names; that order
reproduces every real code the reference gives (H29 Hồ Chí Minh, H38 Lào Cai, H41 Nghệ An, H47 Quảng Nam,
H49 Quảng Ninh, H53 Tây Ninh, H55 Thái Nguyên). G01..G22 follow the same alphabetical rule for the 22
ministries and ministry-level bodies and agree with the known codes (G01 Public Security, G02 Industry and
Trade, G03 Education, G09 Home Affairs, G12 Finance, G18 Health, G22 Government Office); G23..G31 are the
government agencies connected in 2019, numbered here in a plausible order (not an official list).

The Party Central Office (Văn phòng Trung ương Đảng) is neither a G nor an H body; the simulator gives it
``000.00.00.D01`` (D for Đảng), a code of the same shape that cannot collide with G/H codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

PARTY_CENTRAL_OFFICE = "000.00.00.D01"
GOVERNMENT_OFFICE = "000.00.00.G22"

MINISTRIES: tuple[str, ...] = (
    "Bộ Công an",
    "Bộ Công Thương",
    "Bộ Giáo dục và Đào tạo",
    "Bộ Giao thông vận tải",
    "Bộ Kế hoạch và Đầu tư",
    "Bộ Khoa học và Công nghệ",
    "Bộ Lao động - Thương binh và Xã hội",
    "Bộ Ngoại giao",
    "Bộ Nội vụ",
    "Bộ Nông nghiệp và Phát triển nông thôn",
    "Bộ Quốc phòng",
    "Bộ Tài chính",
    "Bộ Tài nguyên và Môi trường",
    "Bộ Thông tin và Truyền thông",
    "Bộ Tư pháp",
    "Bộ Văn hóa, Thể thao và Du lịch",
    "Bộ Xây dựng",
    "Bộ Y tế",
    "Ngân hàng Nhà nước Việt Nam",
    "Thanh tra Chính phủ",
    "Ủy ban Dân tộc",
    "Văn phòng Chính phủ",
    "Bảo hiểm xã hội Việt Nam",
    "Đài Truyền hình Việt Nam",
    "Đài Tiếng nói Việt Nam",
    "Thông tấn xã Việt Nam",
    "Viện Hàn lâm Khoa học xã hội Việt Nam",
    "Viện Hàn lâm Khoa học và Công nghệ Việt Nam",
    "Đại học Quốc gia Hà Nội",
    "Đại học Quốc gia Thành phố Hồ Chí Minh",
    "Ban Quản lý Lăng Chủ tịch Hồ Chí Minh",
)

PROVINCES: tuple[str, ...] = (
    "An Giang", "Bà Rịa - Vũng Tàu", "Bắc Giang", "Bắc Kạn", "Bạc Liêu", "Bắc Ninh", "Bến Tre", "Bình Định",
    "Bình Dương", "Bình Phước", "Bình Thuận", "Cà Mau", "Cần Thơ", "Cao Bằng", "Đà Nẵng", "Đắk Lắk", "Đắk Nông",
    "Điện Biên", "Đồng Nai", "Đồng Tháp", "Gia Lai", "Hà Giang", "Hà Nam", "Hà Nội", "Hà Tĩnh", "Hải Dương",
    "Hải Phòng", "Hậu Giang", "Hồ Chí Minh", "Hòa Bình", "Hưng Yên", "Khánh Hòa", "Kiên Giang", "Kon Tum",
    "Lai Châu", "Lâm Đồng", "Lạng Sơn", "Lào Cai", "Long An", "Nam Định", "Nghệ An", "Ninh Bình", "Ninh Thuận",
    "Phú Thọ", "Phú Yên", "Quảng Bình", "Quảng Nam", "Quảng Ngãi", "Quảng Ninh", "Quảng Trị", "Sóc Trăng",
    "Sơn La", "Tây Ninh", "Thái Bình", "Thái Nguyên", "Thanh Hóa", "Thừa Thiên Huế", "Tiền Giang", "Trà Vinh",
    "Tuyên Quang", "Vĩnh Long", "Vĩnh Phúc", "Yên Bái",
)  # fmt: skip

CENTRAL_CITIES = frozenset({"Hà Nội", "Hồ Chí Minh", "Hải Phòng", "Đà Nẵng", "Cần Thơ"})

DEPARTMENTS: tuple[str, ...] = (
    "Văn phòng UBND", "Sở Nội vụ", "Sở Tư pháp", "Sở Kế hoạch và Đầu tư", "Sở Tài chính", "Sở Công Thương",
    "Sở Nông nghiệp và PTNT", "Sở Giao thông vận tải", "Sở Xây dựng", "Sở Tài nguyên và Môi trường",
    "Sở Thông tin và Truyền thông", "Sở Lao động - TB&XH", "Sở Văn hóa, Thể thao và Du lịch",
    "Sở Khoa học và Công nghệ", "Sở Giáo dục và Đào tạo", "Sở Y tế", "Thanh tra tỉnh", "Ban Dân tộc",
    "Sở Ngoại vụ", "Ban Quản lý các Khu công nghiệp",
)  # fmt: skip

UNIT_KINDS: tuple[str, ...] = ("Phòng", "Chi cục", "Trung tâm", "Ban", "Trường", "Bệnh viện")
LOCAL_KINDS: tuple[str, ...] = ("UBND xã", "UBND phường", "Trường", "Trạm Y tế", "Công an xã")

# agency classes used by scenario weights
MINISTRY = "ministry"
PROVINCE = "province"
PARTY = "party"
DEPARTMENT = "department"
UNIT = "unit"
LOCAL = "local"
CLASSES = (MINISTRY, PROVINCE, PARTY, DEPARTMENT, UNIT, LOCAL)


@dataclass(frozen=True, slots=True)
class Agency:
    """One simulated agency: its code, display name, class and level-1 group (``G22``, ``H53``, ``D01``)."""

    code: str
    name: str
    cls: str
    group: str


def ministry_code(n: int) -> str:
    return f"000.00.00.G{n:02d}"


def province_code(n: int) -> str:
    return f"000.00.00.H{n:02d}"


def top_level() -> list[Agency]:
    """The 95 endpoints of the 2019 axis: 31 ministry-level bodies, 63 provinces, the Party Central Office."""
    out = [Agency(ministry_code(i), name, MINISTRY, f"G{i:02d}") for i, name in enumerate(MINISTRIES, 1)]
    for i, name in enumerate(PROVINCES, 1):
        title = f"UBND thành phố {name}" if name in CENTRAL_CITIES else f"UBND tỉnh {name}"
        out.append(Agency(province_code(i), title, PROVINCE, f"H{i:02d}"))
    out.append(Agency(PARTY_CENTRAL_OFFICE, "Văn phòng Trung ương Đảng", PARTY, "D01"))
    return out


def short_code(code: str) -> str:
    """``000.00.00.G22`` → ``G22``; lower-level codes are returned unchanged."""
    return code[10:] if code.startswith("000.00.00.") else code


def expand_code(code: str) -> str:
    """Accept ``G22`` / ``H53`` / ``D01`` shorthands for top-level codes."""
    if len(code) == 3 and code[0].isalpha() and code[1:].isdigit():
        return f"000.00.00.{code}"
    return code


def _lower_levels(parent: Agency, departments: int, units: int, locals_: int) -> Iterator[Agency]:
    """Agencies under one level-1 body: departments ``000.00.YY.X``, units ``000.ZZ.YY.X``, local ``VVV.ZZ.YY.X``."""
    xxx = parent.group
    place = parent.name.removeprefix("UBND tỉnh ").removeprefix("UBND thành phố ")
    for y in range(1, departments + 1):
        dept = DEPARTMENTS[(y - 1) % len(DEPARTMENTS)]
        suffix = "" if y <= len(DEPARTMENTS) else f" {y}"
        yield Agency(f"000.00.{y:02d}.{xxx}", f"{dept}{suffix} - {place}", DEPARTMENT, xxx)
    for u in range(units):
        y = u % max(departments, 1) + 1
        z = u // max(departments, 1) + 1
        kind = UNIT_KINDS[u % len(UNIT_KINDS)]
        yield Agency(f"000.{z:02d}.{y:02d}.{xxx}", f"{kind} {z} thuộc đơn vị {y:02d} - {place}", UNIT, xxx)
    # local units hang under (z, y) pairs: 999 per pair
    for n in range(locals_):
        pair, v = divmod(n, 999)
        y = pair % 99 + 1
        z = pair // 99 + 1
        kind = LOCAL_KINDS[n % len(LOCAL_KINDS)]
        yield Agency(f"{v + 1:03d}.{z:02d}.{y:02d}.{xxx}", f"{kind} số {v + 1} ({z:02d}.{y:02d}) - {place}", LOCAL, xxx)


def national(total: int) -> list[Agency]:
    """A national directory of ``total`` agencies at every level (at least the 95 top-level bodies).

    Below the 95 top-level bodies, agencies are shared out over the level-1 bodies (provinces get three times
    a ministry's share, the Party office one ministry's share), and within each body about 4% are departments
    (at least one per provincial department kind when there is room), 16% units and the rest commune-level
    and local units. Deterministic: the same ``total`` gives the same list.
    """
    top = top_level()
    if total <= len(top):
        return top[:total]
    rest = total - len(top)
    weights = [3 if a.cls == PROVINCE else 1 for a in top]
    wsum = sum(weights)
    shares = [rest * w // wsum for w in weights]
    for i in range(rest - sum(shares)):
        shares[i % len(shares)] += 1
    out = list(top)
    for parent, share in zip(top, shares, strict=True):
        departments = min(99, share, max(share * 4 // 100, min(len(DEPARTMENTS), share // 3), 1)) if share else 0
        units = min(share * 16 // 100, 99 * 99)
        locals_ = share - departments - units
        out.extend(_lower_levels(parent, departments, units, locals_))
    return out


def classify(code: str) -> str:
    """An agency class from the shape of its code (for directories read from a running axis)."""
    parts = code.split(".")
    if len(parts) != 4:
        return LOCAL
    if parts[:3] == ["000", "00", "00"]:
        return {"G": MINISTRY, "H": PROVINCE}.get(parts[3][:1], PARTY)
    if parts[:2] == ["000", "00"]:
        return DEPARTMENT
    return UNIT if parts[0] == "000" else LOCAL


def from_directory(code: str, name: str) -> Agency:
    parts = code.split(".")
    return Agency(code, name, classify(code), parts[-1] if len(parts) == 4 else parts[0])
