"""Deterministic Spotify account data and "Download your data" archives.

Connector work needs realistic volume and the exact shapes Spotify ships (basic, legacy and
extended exports) without anyone's real listening history. Everything here is a pure function of
its seeds, so a test can regenerate the same user, the same archive bytes and the same API answers.

Times follow Spotify: a play's moment is when it ended. The Web API reports it to the
millisecond, the extended history's `ts` truncates it to the second and the basic history's
`endTime` to the minute, so all three agree on the same play. Podcast episodes and audiobook
chapters sit in the gaps between listening sessions, as they do in real extended histories.
"""

from __future__ import annotations

import json
import random
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

DEFAULT_NOW = datetime(2026, 11, 1, tzinfo=UTC)
"""The fixed "now" that keeps generated data reproducible across days."""

ARCHIVE_ZIP_NAME = "my_spotify_data.zip"
ARCHIVE_DIR_NAME = "MyData"
ACCOUNT_DIR = "Spotify Account Data"
EXTENDED_DIR = "Spotify Extended Streaming History"
MAX_ENTRIES_PER_FILE = 10_000
"""Spotify splits history files; the cap keeps multi-file handling exercised at modest volume."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_DAY_MS = 86_400_000
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

ArchiveKind = Literal["basic", "extended", "legacy"]


@dataclass(frozen=True)
class SpotifyArtist:
    id: str
    name: str


@dataclass(frozen=True)
class SpotifyAlbum:
    id: str
    name: str
    artists: tuple[SpotifyArtist, ...]
    release_date: str
    total_tracks: int = 1


@dataclass(frozen=True)
class SpotifyTrack:
    id: str
    name: str
    duration_ms: int
    artists: tuple[SpotifyArtist, ...]
    album: SpotifyAlbum
    track_number: int = 1
    popularity: int = 0

    @property
    def uri(self) -> str:
        return f"spotify:track:{self.id}"


@dataclass(frozen=True)
class Play:
    """One listen; `played_at` is when it ended (Spotify's semantics), at millisecond precision."""

    played_at: datetime
    track: SpotifyTrack
    ms_played: int
    platform: str
    shuffle: bool
    skipped: bool
    reason_start: str
    reason_end: str


@dataclass(frozen=True)
class SpotifyShow:
    id: str
    name: str
    publisher: str
    description: str
    total_episodes: int

    @property
    def uri(self) -> str:
        return f"spotify:show:{self.id}"


@dataclass(frozen=True)
class SpotifyEpisode:
    id: str
    name: str
    duration_ms: int
    release_date: str
    show: SpotifyShow

    @property
    def uri(self) -> str:
        return f"spotify:episode:{self.id}"


@dataclass(frozen=True)
class SpotifyAudiobook:
    id: str
    title: str
    author: str

    @property
    def uri(self) -> str:
        return f"spotify:show:{self.id}"  # Spotify serves audiobooks as shows


@dataclass(frozen=True)
class AudiobookChapter:
    id: str
    title: str
    duration_ms: int
    audiobook: SpotifyAudiobook

    @property
    def uri(self) -> str:
        return f"spotify:episode:{self.id}"


@dataclass(frozen=True)
class SpokenPlay:
    """One listen to something spoken; `played_at` is when it ended, to the millisecond."""

    played_at: datetime
    ms_played: int
    platform: str
    skipped: bool
    reason_start: str
    reason_end: str


@dataclass(frozen=True)
class EpisodePlay(SpokenPlay):
    episode: SpotifyEpisode


@dataclass(frozen=True)
class ChapterPlay(SpokenPlay):
    chapter: AudiobookChapter


@dataclass(frozen=True)
class SavedTrack:
    added_at: datetime
    track: SpotifyTrack


@dataclass(frozen=True)
class SavedShow:
    added_at: datetime
    show: SpotifyShow


@dataclass(frozen=True)
class SavedEpisode:
    added_at: datetime
    episode: SpotifyEpisode
    resume_position_ms: int
    fully_played: bool


@dataclass(frozen=True)
class PlaylistItem:
    added_at: datetime
    track: SpotifyTrack


@dataclass(frozen=True)
class Playlist:
    id: str
    name: str
    description: str
    public: bool
    collaborative: bool
    snapshot_id: str
    items: tuple[PlaylistItem, ...]


@dataclass
class SpotifyUser:
    """A listener; mutable so a test or demo can append plays after an export was taken.

    `plays` (music), `episode_plays` and `chapter_plays` are each ascending by `played_at` and
    never overlap in time; `saved_*` are ascending by `added_at`.
    """

    id: str
    display_name: str
    email: str
    country: str
    product: str
    created: date
    plays: list[Play]
    saved_tracks: list[SavedTrack]
    playlists: list[Playlist]
    episode_plays: list[EpisodePlay] = field(default_factory=list)
    chapter_plays: list[ChapterPlay] = field(default_factory=list)
    saved_shows: list[SavedShow] = field(default_factory=list)
    saved_episodes: list[SavedEpisode] = field(default_factory=list)


@dataclass(frozen=True)
class SpotifyCatalog:
    """Artists, albums and tracks (and podcasts and audiobooks) shared between users so their
    libraries overlap realistically."""

    artists: tuple[SpotifyArtist, ...]
    albums: tuple[SpotifyAlbum, ...]
    tracks: tuple[SpotifyTrack, ...]
    episodes: tuple[SpotifyEpisode, ...] = ()
    chapters: tuple[AudiobookChapter, ...] = ()

    @property
    def shows(self) -> tuple[SpotifyShow, ...]:
        return tuple({e.show.id: e.show for e in self.episodes}.values())

    def album_tracks(self, album_id: str) -> tuple[SpotifyTrack, ...]:
        """The album's tracks in track-number order."""
        return tuple(t for t in self.tracks if t.album.id == album_id)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // _MS


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(",") if word.strip())


# --- names -----------------------------------------------------------------------------------
# A few words ("Love", "Night", "Heart") recur on purpose so lexical search has unselective
# terms next to rare, selective ones; some carry diacritics to catch ASCII-only assumptions.

_ADJECTIVES = _words(
    """
    Velvet, Golden, Silent, Electric, Broken, Hollow, Neon, Paper, Crimson, Wild, Quiet,
    Faded, Lunar, Amber, Frozen, Burning, Distant, Gentle, Restless, Midnight, Silver,
    Wooden, Blue, Bitter, Sweet, Endless, Hidden, Little, Lost, Northern, Grüne, Doux, Søt,
    Último, Tender, Copper
    """
)
_NOUNS = _words(
    """
    Harbour, River, Heart, Night, Light, Summer, Garden, Mirror, Signal, Ocean, Highway,
    Window, Letter, Echo, Fire, Shadow, Morning, City, Dream, Ghost, Wave, Storm, Stranger,
    Satellite, Feather, Compass, Lantern, Orchard, Café, Sjø, Måne, Straße, Rêverie, Cœur,
    Träume, Élan, Horizon, Static
    """
)
_PLURALS = _words(
    """
    Harbours, Rivers, Wolves, Lanterns, Satellites, Strangers, Echoes, Pines, Owls,
    Machines, Tigers, Kites, Comets, Sparrows, Ghosts, Anchors
    """
)
_FIRST_NAMES = _words(
    """
    Mira, Jonas, Élodie, Søren, Ada, Lukas, Ines, Noah, Freja, Matteo, Chloé, Björn, Yara,
    Felix, Zoë, Emil, Lena, Oskar, Nina, Théo, Astrid, Rafael, Maja, Jürgen
    """
)
_LAST_NAMES = _words(
    """
    Sølvberg, Müller, Marchand, Lindqvist, Okafor, Rossi, Novak, Haugen, Dubois, Kowalski,
    Andersen, Brenner, Castillo, Øvergaard, Fischer, Lefèvre, Nakamura, Varga, Holm, Weiß
    """
)
_PHRASES = _words(
    """
    Take Me Home, Don't Look Back, Hold On, Stay Awake, Call Me Later, Run Away,
    Come Closer, Let It Go, Keep Dancing, Wait for Me, Say My Name, Drive Slow
    """
)
_PLAYLIST_NAMES = _words(
    """
    Morning Run, Late Night Drive, Sunday Café, Søvn & Stille, Focus Flow, Throwbacks,
    Road Trip 2024, Rainy Days, Kitchen Disco, Deep Work, Über Chill, Love Songs,
    Night Shift, Summer '25, Gym Hits, Dinner Party
    """
)
_PLAYLIST_DESCRIPTIONS = (
    "Songs for the slow hours.",
    "No skips allowed.",
    "Café vibes, windows open.",
    "Everything I had on repeat this year.",
    "For long drives and longer nights.",
    "Müde? Press play.",
)
_PLATFORMS = (
    "Android OS 13 API 33 (Google, Pixel 7)",
    "iOS 17.1.2 (iPhone15,2)",
    "Windows 10 (10.0.19045; x64; AppX)",
    "OS X 14.1.0 [arm 2]",
    "web_player linux ;firefox 119.0;desktop",
    "Partner sonos_speaker Sonos One",
)
_SHOW_PATTERNS = (
    "The {adj} {noun} Podcast",
    "{noun} Talk",
    "Morning {noun}",
    "{adj} Minds",
    "Inside the {noun}",
    "{noun} & {noun2}",
)
_EPISODE_TOPICS = _words(
    """
    Why We Sleep, The History of Coffee, Cities After Dark, A Year Without Plastic,
    Learning to Listen, The Café Economy, Straße und Stadt, Ocean Currents, Small Habits,
    The Night Shift, Signals from Space, Fire Season, Ghost Towns, Quiet Heroes
    """
)
_COUNTRIES = ("SE", "DE", "FR", "NO", "US", "GB", "NL", "DK", "ES", "FI")
# Listening by UTC hour: quiet nights, a commute bump, heavy evenings.
_HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 4, 8, 9, 6, 5, 5, 6, 6, 5, 5, 6, 8, 9, 10, 10, 9, 7, 4)


def _spotify_id(rng: random.Random, length: int = 22) -> str:
    return "".join(rng.choice(_BASE62) for _ in range(length))


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    taken.add(candidate)
    return candidate


def _artist_name(rng: random.Random) -> str:
    pattern = rng.randrange(5)
    if pattern == 0:
        return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_PLURALS)}"
    if pattern == 1:
        return f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
    if pattern == 2:
        return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if pattern == 3:
        return f"{rng.choice(_FIRST_NAMES)} & the {rng.choice(_PLURALS)}"
    return f"{rng.choice(_NOUNS)} {rng.choice(_PLURALS)}"


def _album_name(rng: random.Random, artist: SpotifyArtist) -> str:
    pattern = rng.randrange(6)
    if pattern == 0:
        return artist.name
    if pattern == 1:
        return f"Songs for the {rng.choice(_NOUNS)}"
    if pattern == 2:
        return f"{rng.choice(_NOUNS)} Sessions"
    if pattern == 3:
        return f"Live at the {rng.choice(_NOUNS)}"
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"


def _track_name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.12:
        name = rng.choice(("Love", "Night", "Heart")) + " " + rng.choice(_NOUNS)
    elif roll < 0.22:
        name = f"{rng.choice(_ADJECTIVES)} Love"
    elif roll < 0.45:
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    elif roll < 0.6:
        name = rng.choice(_PHRASES)
    elif roll < 0.72:
        name = f"The {rng.choice(_NOUNS)}"
    elif roll < 0.85:
        name = f"{rng.choice(_NOUNS)} of {rng.choice(_NOUNS)}"
    else:
        name = rng.choice(_NOUNS)
    if rng.random() < 0.04:
        name += f" - Remastered {rng.randint(2001, 2022)}"
    elif rng.random() < 0.02:
        name += " - Live"
    return name


def _random_date(rng: random.Random, first: date, last: date) -> date:
    return date.fromordinal(rng.randint(first.toordinal(), last.toordinal()))


def _show_name(rng: random.Random) -> str:
    nouns = rng.sample(_NOUNS, 2)
    return rng.choice(_SHOW_PATTERNS).format(
        adj=rng.choice(_ADJECTIVES), noun=nouns[0], noun2=nouns[1]
    )


# --- catalog ---------------------------------------------------------------------------------


def generate_catalog(
    *, seed: int, artists: int = 120, shows: int = 12, audiobooks: int = 4
) -> SpotifyCatalog:
    """A catalog of `artists` artists with 1-4 albums of 5-14 tracks each (~25 tracks/artist),
    `shows` podcasts of 20-120 episodes and `audiobooks` audiobooks of 8-30 chapters."""
    if artists < 1:
        raise ValueError("a catalog needs at least one artist")
    if shows < 0 or audiobooks < 0:
        raise ValueError("shows and audiobooks must be >= 0")
    rng = random.Random(seed)
    names: set[str] = set()
    artist_list = [
        SpotifyArtist(_spotify_id(rng), _unique(_artist_name(rng), names)) for _ in range(artists)
    ]
    albums: list[SpotifyAlbum] = []
    tracks: list[SpotifyTrack] = []
    for artist in artist_list:
        fame = rng.randint(10, 85)
        for _ in range(rng.choices((1, 2, 3, 4), weights=(3, 4, 2, 1))[0]):
            count = rng.randint(5, 14)
            album = SpotifyAlbum(
                id=_spotify_id(rng),
                name=_album_name(rng, artist),
                artists=(artist,),
                release_date=_random_date(rng, date(1972, 1, 1), date(2026, 9, 30)).isoformat(),
                total_tracks=count,
            )
            albums.append(album)
            for number in range(1, count + 1):
                name = _track_name(rng)
                credited: tuple[SpotifyArtist, ...] = (artist,)
                if len(artist_list) > 1 and rng.random() < 0.1:
                    guest = rng.choice([a for a in artist_list if a is not artist])
                    credited = (artist, guest)
                    name += f" (feat. {guest.name})"
                tracks.append(
                    SpotifyTrack(
                        id=_spotify_id(rng),
                        name=name,
                        duration_ms=min(540_000, max(95_000, int(rng.gauss(215_000, 45_000)))),
                        artists=credited,
                        album=album,
                        track_number=number,
                        popularity=min(100, max(0, fame + rng.randint(-15, 15))),
                    )
                )
    episodes, chapters = _spoken_catalog(random.Random(f"{seed}/spoken"), shows, audiobooks)
    return SpotifyCatalog(tuple(artist_list), tuple(albums), tuple(tracks), episodes, chapters)


def _spoken_catalog(
    rng: random.Random, shows: int, audiobooks: int
) -> tuple[tuple[SpotifyEpisode, ...], tuple[AudiobookChapter, ...]]:
    """Podcasts and audiobooks, from their own random stream so the music stays as it was."""
    names: set[str] = set()
    episodes: list[SpotifyEpisode] = []
    for _ in range(shows):
        count = rng.randint(20, 120)
        show = SpotifyShow(
            id=_spotify_id(rng),
            name=_unique(_show_name(rng), names),
            publisher=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
            description=rng.choice(_PLAYLIST_DESCRIPTIONS),
            total_episodes=count,
        )
        released = _random_date(rng, date(2010, 1, 1), date(2014, 12, 31))
        for number in range(1, count + 1):
            released += timedelta(days=rng.choice((7, 7, 7, 14)))
            episodes.append(
                SpotifyEpisode(
                    id=_spotify_id(rng),
                    name=f"#{number} {rng.choice(_EPISODE_TOPICS)}",
                    duration_ms=rng.randint(15, 90) * 60_000 + rng.randrange(60_000),
                    release_date=released.isoformat(),
                    show=show,
                )
            )
    chapters: list[AudiobookChapter] = []
    for _ in range(audiobooks):
        book = SpotifyAudiobook(
            id=_spotify_id(rng),
            title=_unique(f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}", names),
            author=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        )
        for number in range(1, rng.randint(8, 30) + 1):
            chapters.append(
                AudiobookChapter(
                    id=_spotify_id(rng),
                    title=f"Chapter {number}",
                    duration_ms=rng.randint(8, 40) * 60_000 + rng.randrange(60_000),
                    audiobook=book,
                )
            )
    return tuple(episodes), tuple(chapters)


# --- users -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Taste:
    """A listener's weighted slice of the catalog: a few favourite artists dominate, as in life."""

    tracks: tuple[SpotifyTrack, ...]
    cum_weights: tuple[float, ...]
    albums: tuple[tuple[SpotifyTrack, ...], ...]
    album_weights: tuple[float, ...]
    everything: tuple[SpotifyTrack, ...]

    @classmethod
    def build(cls, rng: random.Random, catalog: SpotifyCatalog) -> _Taste:
        favourites = rng.sample(catalog.artists, min(len(catalog.artists), rng.randint(25, 60)))
        rank = {artist.id: i for i, artist in enumerate(favourites)}
        tracks: list[SpotifyTrack] = []
        cum: list[float] = []
        total = 0.0
        by_album: dict[str, list[SpotifyTrack]] = {}
        album_weight: dict[str, float] = {}
        for track in catalog.tracks:
            position = rank.get(track.artists[0].id)
            if position is None:
                continue
            weight = (0.2 + track.popularity / 100) / (position + 1) ** 1.1
            total += weight
            tracks.append(track)
            cum.append(total)
            by_album.setdefault(track.album.id, []).append(track)
            album_weight[track.album.id] = album_weight.get(track.album.id, 0.0) + weight
        return cls(
            tracks=tuple(tracks),
            cum_weights=tuple(cum),
            albums=tuple(tuple(v) for v in by_album.values()),
            album_weights=tuple(album_weight[k] for k in by_album),
            everything=catalog.tracks,
        )

    def pick(self, rng: random.Random) -> SpotifyTrack:
        if rng.random() < 0.05:
            return rng.choice(self.everything)
        return rng.choices(self.tracks, cum_weights=self.cum_weights)[0]

    def album_run(self, rng: random.Random, length: int) -> list[SpotifyTrack]:
        album = rng.choices(self.albums, weights=self.album_weights)[0]
        start = rng.randrange(len(album))
        return [album[(start + i) % len(album)] for i in range(length)]


_NEXT_REASON_START = {"trackdone": "trackdone", "fwdbtn": "fwdbtn", "backbtn": "backbtn"}


def _listen(rng: random.Random, track: SpotifyTrack) -> tuple[int, bool, str]:
    """How much of a track was heard: mostly to the end, sometimes skipped early."""
    roll = rng.random()
    if roll < 0.78:
        return max(1, track.duration_ms - rng.randint(0, 1200)), False, "trackdone"
    if roll < 0.93:
        return rng.randint(800, min(45_000, track.duration_ms)), True, "fwdbtn"
    if roll < 0.96:
        return rng.randint(1_000, 20_000), False, "backbtn"
    return rng.randint(30_000, track.duration_ms), False, "endplay"


def _generate_plays(
    rng: random.Random, taste: _Taste, count: int, start_ms: int, end_ms: int
) -> list[Play]:
    lengths: list[int] = []
    remaining = count
    while remaining > 0:
        size = min(remaining, 1 + int(rng.expovariate(1 / 7)))
        lengths.append(size)
        remaining -= size
    day0 = start_ms - start_ms % _DAY_MS
    days = max(1, (end_ms - day0) // _DAY_MS)
    starts = sorted(
        min(
            end_ms,
            max(
                start_ms,
                day0
                + rng.randrange(days) * _DAY_MS
                + rng.choices(range(24), weights=_HOUR_WEIGHTS)[0] * 3_600_000
                + rng.randrange(3_600_000),
            ),
        )
        for _ in lengths
    )
    devices = rng.sample(_PLATFORMS, rng.randint(2, 3))
    plays: list[Play] = []
    cursor = start_ms
    for session_start, length in zip(starts, lengths, strict=True):
        cursor = max(session_start, cursor + 30_000)
        album_mode = rng.random() < 0.25
        shuffle = not album_mode and rng.random() < 0.5
        platform = rng.choices(devices, weights=(6, 3, 1)[: len(devices)])[0]
        queue = (
            taste.album_run(rng, length) if album_mode else [taste.pick(rng) for _ in range(length)]
        )
        reason_start = rng.choice(("clickrow", "playbtn", "appload", "remote", "clickrow"))
        for track in queue:
            ms_played, skipped, reason_end = _listen(rng, track)
            cursor += ms_played
            plays.append(
                Play(
                    played_at=from_epoch_ms(cursor),
                    track=track,
                    ms_played=ms_played,
                    platform=platform,
                    shuffle=shuffle,
                    skipped=skipped,
                    reason_start=reason_start,
                    reason_end=reason_end,
                )
            )
            reason_start = _NEXT_REASON_START.get(reason_end, "clickrow")
            cursor += rng.randint(0, 2_500)
    overshoot = epoch_ms(plays[-1].played_at) - end_ms if plays else 0
    if overshoot > 0:  # a dense history spilled past `now`: slide it back, order intact
        shift = timedelta(milliseconds=overshoot)
        plays = [replace(p, played_at=p.played_at - shift) for p in plays]
    return plays


def _random_moments(rng: random.Random, count: int, start_ms: int, end_ms: int) -> list[datetime]:
    """Sorted second-precision moments, the precision Spotify uses for `added_at`."""
    lo, hi = start_ms // 1000, max(start_ms, end_ms) // 1000
    return [from_epoch_ms(s * 1000) for s in sorted(rng.randint(lo, hi) for _ in range(count))]


def _distinct(count: int, draw: Callable[[], SpotifyTrack]) -> list[SpotifyTrack]:
    """Up to `count` different tracks; gives up after 20 draws per slot on a tiny catalog."""
    seen: dict[str, SpotifyTrack] = {}
    for _ in range(count * 20):
        if len(seen) >= count:
            break
        track = draw()
        seen.setdefault(track.id, track)
    return list(seen.values())


def _display_name(user_id: str) -> str:
    parts = [p for p in user_id.replace("_", ".").replace("-", ".").split(".") if p]
    return " ".join(p[:1].upper() + p[1:] for p in parts) or user_id


def generate_user(
    user_id: str,
    *,
    seed: int,
    plays: int = 3000,
    years: float = 3.0,
    now: datetime | None = None,
    catalog: SpotifyCatalog | None = None,
    episodes: int | None = None,
    chapters: int | None = None,
) -> SpotifyUser:
    """A listener with `plays` plays over the `years` before `now`, saved tracks and playlists.

    Between listening sessions they hear `episodes` podcast episodes (default: one per 20 plays)
    and `chapters` audiobook chapters (default: one per 100 plays), as many as the gaps between
    sessions hold, and follow and save some of those podcasts. Pass one `catalog` to several
    users so they share artists and tracks, as real users do.
    """
    if plays < 0:
        raise ValueError("plays must be >= 0")
    if (episodes is not None and episodes < 0) or (chapters is not None and chapters < 0):
        raise ValueError("episodes and chapters must be >= 0")
    if years <= 0:
        raise ValueError("years must be > 0")
    moment = DEFAULT_NOW if now is None else now
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    moment = moment.astimezone(UTC)
    catalog = catalog if catalog is not None else generate_catalog(seed=seed)
    rng = random.Random(seed)
    taste = _Taste.build(rng, catalog)
    end_ms = epoch_ms(moment) - rng.randint(5, 120) * 60_000
    start_ms = end_ms - int(years * 365.25 * _DAY_MS)
    history = _generate_plays(rng, taste, plays, start_ms, end_ms)
    first_day = (history[0].played_at if history else from_epoch_ms(start_ms)).date()
    created = first_day - timedelta(days=rng.randint(3, 400))
    created_ms = epoch_ms(_midnight(created))

    played = [p.track for p in history]
    saved_target = min(len(catalog.tracks), rng.randint(180, 420))
    saved = _distinct(
        saved_target,
        lambda: rng.choice(played) if played and rng.random() < 0.75 else taste.pick(rng),
    )
    rng.shuffle(saved)
    saved_tracks = [
        SavedTrack(at, track)
        for at, track in zip(
            _random_moments(rng, len(saved), created_ms, end_ms), saved, strict=True
        )
    ]

    playlists: list[Playlist] = []
    for name in rng.sample(_PLAYLIST_NAMES, rng.randint(3, 8)):
        size = min(len(catalog.tracks), rng.randint(10, 80))
        members = _distinct(size, lambda: taste.pick(rng))
        opened = rng.randint(created_ms, max(created_ms, end_ms - 30 * _DAY_MS))
        closed = rng.randint(opened, end_ms)
        collaborative = rng.random() < 0.1
        playlists.append(
            Playlist(
                id=_spotify_id(rng),
                name=name,
                description=rng.choice(_PLAYLIST_DESCRIPTIONS) if rng.random() < 0.5 else "",
                public=not collaborative and rng.random() < 0.6,
                collaborative=collaborative,
                snapshot_id=_spotify_id(rng, 32),
                items=tuple(
                    PlaylistItem(at, track)
                    for at, track in zip(
                        _random_moments(rng, len(members), opened, closed), members, strict=True
                    )
                ),
            )
        )

    return SpotifyUser(
        id=user_id,
        display_name=_display_name(user_id),
        email=f"{user_id}@example.com",
        country=rng.choice(_COUNTRIES),
        product="premium",
        created=created,
        plays=history,
        saved_tracks=saved_tracks,
        playlists=playlists,
        **_spoken_listening(
            random.Random(f"{seed}/spoken"),
            catalog,
            history,
            plays // 20 if episodes is None else episodes,
            plays // 100 if chapters is None else chapters,
            created_ms,
        ),
    )


_MIN_SPOKEN_GAP_MS = 5 * 60_000


def _spoken_listening(
    rng: random.Random,
    catalog: SpotifyCatalog,
    history: Sequence[Play],
    episodes: int,
    chapters: int,
    created_ms: int,
) -> dict[str, Any]:
    """Episode and chapter listens placed in the gaps between music plays (one a gap, so no two
    listens overlap), and the shows and episodes the user saved. Its own random stream keeps
    the music of a seed unchanged."""
    gaps = [
        (
            epoch_ms(before.played_at) + 30_000,
            epoch_ms(after.played_at) - after.ms_played - 30_000,
            before.platform,
        )
        for before, after in pairwise(history)
    ]
    gaps = [gap for gap in gaps if gap[1] - gap[0] >= _MIN_SPOKEN_GAP_MS]
    shows = catalog.shows
    episodes = episodes if shows else 0
    chapters = chapters if catalog.chapters else 0
    chosen = sorted(rng.sample(range(len(gaps)), min(len(gaps), episodes + chapters)))
    kinds = ["episode"] * episodes + ["chapter"] * chapters
    rng.shuffle(kinds)
    favourites = rng.sample(shows, min(len(shows), rng.randint(2, 5))) if shows else []
    queues = {show.id: [e for e in catalog.episodes if e.show.id == show.id] for show in favourites}
    positions = {show_id: rng.randrange(len(queue)) for show_id, queue in queues.items()}
    book = rng.choice(catalog.chapters).audiobook if catalog.chapters else None
    book_chapters = [c for c in catalog.chapters if book is not None and c.audiobook == book]
    episode_plays: list[EpisodePlay] = []
    chapter_plays: list[ChapterPlay] = []
    for index, kind in zip(chosen, kinds, strict=False):
        start, end, platform = gaps[index]
        room = end - start
        if kind == "episode":
            show = rng.choice(favourites)
            queue = queues[show.id]
            heard: SpotifyEpisode | AudiobookChapter = queue[positions[show.id] % len(queue)]
            positions[show.id] += 1
        else:
            heard = book_chapters[len(chapter_plays) % len(book_chapters)]
        whole = rng.random() < 0.7
        ms_played = min(heard.duration_ms, room) if whole else rng.randint(60_000, room)
        ms_played = min(ms_played, heard.duration_ms)
        ended = from_epoch_ms(start + ms_played + rng.randrange(room - ms_played + 1))
        finished = ms_played >= heard.duration_ms
        reason_end = "trackdone" if finished else rng.choice(("endplay", "logout", "fwdbtn"))
        reason_start = rng.choice(("clickrow", "playbtn", "trackdone"))
        skipped = reason_end == "fwdbtn"
        listen = (ended, ms_played, platform, skipped, reason_start, reason_end)
        if isinstance(heard, SpotifyEpisode):
            episode_plays.append(EpisodePlay(*listen, heard))
        else:
            chapter_plays.append(ChapterPlay(*listen, heard))
    end_ms = epoch_ms(history[-1].played_at) if history else created_ms
    followed = [show for show in favourites if rng.random() < 0.8]
    heard_episodes = list({p.episode.id: p.episode for p in episode_plays}.values())
    kept = rng.sample(heard_episodes, min(len(heard_episodes), rng.randint(3, 10)))
    saved_episodes = []
    for at, episode in zip(_random_moments(rng, len(kept), created_ms, end_ms), kept, strict=True):
        fully = rng.random() < 0.3
        saved_episodes.append(
            SavedEpisode(at, episode, 0 if fully else rng.randrange(episode.duration_ms), fully)
        )
    return {
        "episode_plays": episode_plays,
        "chapter_plays": chapter_plays,
        "saved_shows": [
            SavedShow(at, show)
            for at, show in zip(
                _random_moments(rng, len(followed), created_ms, end_ms), followed, strict=True
            )
        ],
        "saved_episodes": saved_episodes,
    }


def add_plays(
    user: SpotifyUser,
    count: int,
    *,
    seed: int,
    after: datetime | None = None,
    spacing_seconds: int = 240,
) -> list[Play]:
    """Append `count` plays of tracks the user already knows, `spacing_seconds` apart.

    The first new play ends `spacing_seconds` (plus a sub-second jitter) after the later of the
    user's latest play and `after`, so new plays are always strictly newest and `plays` stays
    sorted. A track longer than the spacing is cut short and marked skipped, as it would be.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if spacing_seconds < 1:
        raise ValueError("spacing_seconds must be >= 1")
    known: dict[str, SpotifyTrack] = {}
    for track in (
        *(p.track for p in user.plays),
        *(s.track for s in user.saved_tracks),
        *(i.track for pl in user.playlists for i in pl.items),
    ):
        known.setdefault(track.id, track)
    if count and not known:
        raise ValueError(f"user {user.id!r} has no tracks to play")
    pool = list(known.values())
    floors = [epoch_ms(p) for p in (after,) if p is not None]
    if user.plays:
        floors.append(epoch_ms(user.plays[-1].played_at))
    base = max(floors) if floors else epoch_ms(_midnight(user.created))
    rng = random.Random(seed)
    spacing_ms = spacing_seconds * 1000
    platform = user.plays[-1].platform if user.plays else _PLATFORMS[0]
    reason_start = "clickrow"
    added: list[Play] = []
    for k in range(1, count + 1):
        track = rng.choice(pool)
        ms_played = min(track.duration_ms, max(1000, spacing_ms - 2000))
        skipped = ms_played < track.duration_ms
        reason_end = "fwdbtn" if skipped else "trackdone"
        added.append(
            Play(
                played_at=from_epoch_ms(base + k * spacing_ms + rng.randrange(1000)),
                track=track,
                ms_played=ms_played,
                platform=platform,
                shuffle=False,
                skipped=skipped,
                reason_start=reason_start,
                reason_end=reason_end,
            )
        )
        reason_start = reason_end
    user.plays.extend(added)
    return added


# --- archives --------------------------------------------------------------------------------


def _pretty(value: Any) -> bytes:
    """Spotify's account-data files are pretty-printed with a spaced colon (`"key" : value`)."""
    return json.dumps(value, ensure_ascii=False, indent=2, separators=(",", " : ")).encode()


def _plain(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2).encode()


def _chunks(items: Sequence[Any], size: int = MAX_ENTRIES_PER_FILE) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [items[:0]]


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _years(first: datetime, last: datetime) -> str:
    return str(first.year) if first.year == last.year else f"{first.year}-{last.year}"


_PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _account_files(
    user: SpotifyUser,
    exported: datetime,
    *,
    legacy: bool,
    include_identity: bool,
    extra_files: bool,
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if include_identity:
        files["Userdata.json"] = _pretty(
            {
                "username": user.id,
                "email": user.email,
                "country": user.country,
                "createdFromFacebook": False,
                "facebookUid": None,
                "birthdate": "1990-05-01",
                "gender": "neutral",
                "postalCode": None,
                "mobileNumber": None,
                "mobileOperator": None,
                "mobileBrand": None,
                "creationTime": user.created.isoformat(),
            }
        )
    year_ago = exported - timedelta(days=365)
    recent = [p for p in user.plays if year_ago < p.played_at <= exported]
    history = [
        {
            "endTime": p.played_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            "artistName": p.track.artists[0].name,
            "trackName": p.track.name,
            "msPlayed": p.ms_played,
        }
        for p in recent
    ]
    for index, chunk in enumerate(_chunks(history)):
        name = f"StreamingHistory{index}.json" if legacy else f"StreamingHistory_music_{index}.json"
        files[name] = _pretty(list(chunk))
    if not legacy:
        podcasts = [
            {
                "endTime": e.played_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                "podcastName": e.episode.show.name,
                "episodeName": e.episode.name,
                "msPlayed": e.ms_played,
            }
            for e in user.episode_plays
            if year_ago < e.played_at <= exported
        ]
        for index, chunk in enumerate(_chunks(podcasts)):
            files[f"StreamingHistory_podcast_{index}.json"] = _pretty(list(chunk))
    files["YourLibrary.json"] = _pretty(
        {
            "tracks": [
                {
                    "artist": s.track.artists[0].name,
                    "album": s.track.album.name,
                    "track": s.track.name,
                    "uri": s.track.uri,
                }
                for s in user.saved_tracks
                if s.added_at <= exported
            ],
            "albums": [],
            "shows": [],
            "episodes": [],
            "bannedTracks": [],
            "artists": [],
            "bannedArtists": [],
            "other": [],
        }
    )
    playlists = []
    for playlist in user.playlists:
        items = [i for i in playlist.items if i.added_at <= exported]
        playlists.append(
            {
                "name": playlist.name,
                "lastModifiedDate": _day(items[-1].added_at if items else exported),
                "collaborators": [],
                "description": playlist.description or None,
                "numberOfFollowers": 0,
                "items": [
                    {
                        "track": {
                            "trackName": i.track.name,
                            "artistName": i.track.artists[0].name,
                            "albumName": i.track.album.name,
                            "trackUri": i.track.uri,
                        },
                        "episode": None,
                        "audiobook": None,
                        "localTrack": None,
                        "addedDate": _day(i.added_at),
                    }
                    for i in items
                ],
            }
        )
    files["Playlist1.json"] = _pretty({"playlists": playlists})
    if extra_files:
        files["Inferences.json"] = _pretty(
            {
                "inferences": [
                    "1P_Custom_Music_Enthusiasts",
                    "1P_Podcast_Listeners_Any",
                    f"3P_Custom_Country_{user.country}",
                    "Premium_Subscribers",
                ]
            }
        )
        rng = random.Random(f"{user.id}/searches")
        sample = rng.sample(recent, min(len(recent), 12))
        files["SearchQueries.json"] = _pretty(
            [
                {
                    "platform": "ANDROID",
                    "searchTime": p.played_at.strftime("%Y-%m-%dT%H:%M:%S.")
                    + f"{p.played_at.microsecond // 1000:03d}Z",
                    "searchQuery": p.track.artists[0].name.split()[-1].lower(),
                    "searchInteractionURIs": [p.track.uri],
                }
                for p in sorted(sample, key=lambda p: p.played_at)
            ]
        )
        files["ReadMeFirst_ExtendedStreamingHistory.pdf"] = _PDF
    return {f"{ACCOUNT_DIR}/{name}": data for name, data in files.items()}


def _extended_entry(
    user: SpotifyUser, listen: Play | EpisodePlay | ChapterPlay, include_identity: bool
) -> dict[str, Any]:
    """One entry of an extended history: every field present, null where it does not apply."""
    end_ms = epoch_ms(listen.played_at)
    track = listen.track if isinstance(listen, Play) else None
    episode = listen.episode if isinstance(listen, EpisodePlay) else None
    chapter = listen.chapter if isinstance(listen, ChapterPlay) else None
    entry: dict[str, Any] = {"ts": listen.played_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if include_identity:
        entry["username"] = user.id
    return entry | {
        "platform": listen.platform,
        "ms_played": listen.ms_played,
        "conn_country": user.country,
        "ip_addr_decrypted": f"192.0.2.{1 + (end_ms // 1000) % 254}",
        "user_agent_decrypted": "unknown",
        "master_metadata_track_name": track.name if track else None,
        "master_metadata_album_artist_name": track.album.artists[0].name if track else None,
        "master_metadata_album_album_name": track.album.name if track else None,
        "spotify_track_uri": track.uri if track else None,
        "episode_name": episode.name if episode else None,
        "episode_show_name": episode.show.name if episode else None,
        "spotify_episode_uri": episode.uri if episode else None,
        "audiobook_title": chapter.audiobook.title if chapter else None,
        "audiobook_uri": chapter.audiobook.uri if chapter else None,
        "audiobook_chapter_uri": chapter.uri if chapter else None,
        "audiobook_chapter_title": chapter.title if chapter else None,
        "reason_start": listen.reason_start,
        "reason_end": listen.reason_end,
        "shuffle": listen.shuffle if isinstance(listen, Play) else False,
        "skipped": listen.skipped,
        "offline": False,
        "offline_timestamp": end_ms - listen.ms_played,
        "incognito_mode": False,
    }


def _extended_files(
    user: SpotifyUser, exported: datetime, *, include_identity: bool, extra_files: bool
) -> dict[str, bytes]:
    plays = [p for p in user.plays if p.played_at <= exported]
    listens: list[Play | EpisodePlay | ChapterPlay] = sorted(
        [
            *plays,
            *(e for e in user.episode_plays if e.played_at <= exported),
            *(c for c in user.chapter_plays if c.played_at <= exported),
        ],
        key=lambda listen: listen.played_at,
    )
    files: dict[str, bytes] = {}
    for index, chunk in enumerate(_chunks(listens)):
        entries = [_extended_entry(user, listen, include_identity) for listen in chunk]
        span = _years(chunk[0].played_at, chunk[-1].played_at) if chunk else str(exported.year)
        files[f"Streaming_History_Audio_{span}_{index}.json"] = _plain(entries)
    if extra_files:
        span = _years(plays[0].played_at, plays[-1].played_at) if plays else str(exported.year)
        files[f"Streaming_History_Video_{span}.json"] = _plain([])
        files["ReadMeFirst_ExtendedStreamingHistory.pdf"] = _PDF
    return {f"{EXTENDED_DIR}/{name}": data for name, data in files.items()}


def write_archive(
    user: SpotifyUser,
    dest: Path,
    *,
    kind: ArchiveKind = "basic",
    include_identity: bool = True,
    as_zip: bool = True,
    extra_files: bool = True,
    exported_at: datetime | None = None,
) -> Path:
    """Write the user's export into directory `dest`; return the zip or folder created.

    `exported_at` (default: the latest play) is when the export was requested: nothing later is
    included, and the basic and legacy histories cover only the 365 days before it, as Spotify's
    do. Zip bytes depend only on the user and the arguments. Refuses to overwrite an export.
    """
    if exported_at is not None:
        exported = exported_at.astimezone(UTC)
    elif user.plays:
        exported = user.plays[-1].played_at
    else:
        exported = _midnight(user.created)
    if kind == "extended":
        files = _extended_files(
            user, exported, include_identity=include_identity, extra_files=extra_files
        )
    elif kind in ("basic", "legacy"):
        files = _account_files(
            user,
            exported,
            legacy=kind == "legacy",
            include_identity=include_identity,
            extra_files=extra_files,
        )
    else:
        raise ValueError(f"unknown archive kind {kind!r}")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (ARCHIVE_ZIP_NAME if as_zip else ARCHIVE_DIR_NAME)
    if target.exists():
        raise FileExistsError(target)
    if as_zip:
        stamp = max(exported, datetime(1980, 1, 1, tzinfo=UTC)).timetuple()[:6]
        with zipfile.ZipFile(target, "w") as archive:
            folders = sorted({name.rsplit("/", 1)[0] + "/" for name in files})
            for folder in folders:
                info = zipfile.ZipInfo(folder, date_time=stamp)
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, files[name])
    else:
        for name in sorted(files):
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[name])
    return target
