"""``valid_topics`` and ``invalid_keywords``: is a question about what the endpoint is for,
and does a text carry a blocked word.

A question is on topic when it shares a word with one of the topics (``"gamma-ray bursts"``
matches "burst"; plural and singular are the same word). When the topics are about
astronomy or the GCN (a topic word is in :data:`DOMAIN`), the domain's vocabulary counts
too, and so does any event name (``GRB 130427A``, ``S190425z``, ``EP240315a``,
``IceCube-231016A``, ``FRB 20200428``…, see :func:`gcn_rag.corpus.events.find_event_ids`):
"What is the T90 of GRB 130427A?" is about gamma-ray bursts even though it says neither
word. Topics about something else get their own words only.

Keywords match as whole words (``"war"`` blocks "war", not "software"), case-insensitively,
with any run of spaces between the words of a keyword.
"""

from __future__ import annotations

import functools
import re

from gcn_rag.corpus.events import question_event_ids

#: The words of astronomy transients and the GCN: missions, instruments, messengers and the
#: quantities circulars report.
DOMAIN = frozenset(
    """
    astronomy astronomical astrophysics astrophysical astronomer transient transients gcn
    circular circulars burst bursts grb gamma ray rays xray xrf sgr frb magnetar pulsar nova
    kilonova supernova hypernova afterglow counterpart galaxy galaxies galactic extragalactic
    star stars stellar quasar agn blazar tde neutron collapsar cosmic cosmological sky
    redshift magnitude fluence flux luminosity lightcurve spectrum spectra spectral
    spectroscopy spectroscopic photometry photometric polarization polarimetry extinction
    epeak t90 eiso photon photons kev mev gev tev erg jansky mjy mpc gpc parsec arcsec arcmin
    j2000 skymap triangulation telescope telescopes observatory satellite optical infrared
    ultraviolet swift fermi gbm bat xrt uvot konus maxi nicer nustar chandra xmm hubble hst
    jwst webb vlt keck gemini subaru gtc noema alma vla atca meerkat lofar chime ligo virgo
    kagra lvk gravitational gw neutrino neutrinos icecube km3net antares baikal hawc lhaaso
    hess veritas cta einstein wxt svom eclairs gecam hxmt astrosat czti calet agile batse
    bepposax hete ztf panstarrs grond decam lsst ukirt asassn sdss usno ipn tidal disruption
    chirp accretion nebula comet asteroid planet exoplanet solar eclipse orbit dwarf variable
    cepheid microlensing occultation meteor interstellar intergalactic dust synchrotron
    relativistic lorentz dispersion pulsation periodicity arcminute arcsecond declination
    """.split()
)
_WORD = re.compile(r"[a-z0-9]+")


def find_keywords(text: str, keywords: list[str]) -> list[str]:
    """The blocked keywords that occur in ``text`` as whole words, case-insensitively."""
    return [k for k in keywords if _keyword(k).search(text)]


def on_topic(text: str, topics: list[str]) -> bool:
    """Whether ``text`` is about one of ``topics`` (True when no topic is set)."""
    if not topics:
        return True
    vocabulary, astronomy = _vocabulary(tuple(topics))
    if vocabulary & _stems(text):
        return True
    return astronomy and bool(question_event_ids(text))


@functools.lru_cache(maxsize=256)
def _keyword(keyword: str) -> re.Pattern[str]:
    words = r"\s+".join(re.escape(w) for w in keyword.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.I)


@functools.lru_cache(maxsize=64)
def _vocabulary(topics: tuple[str, ...]) -> tuple[frozenset[str], bool]:
    """The stems that put a text on ``topics``, and whether the topics are astronomy's."""
    own = frozenset(
        s for t in topics for s in _stems(t) if (len(s) > 2 or s in _SHORT) and s not in _STOP
    )
    astronomy = bool(own & _DOMAIN_STEMS)
    return (own | _DOMAIN_STEMS if astronomy else own), astronomy


def _stems(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _WORD.findall(text.lower()))


def _stem(word: str) -> str:
    """Plural and singular as one word: bursts -> burst, galaxies -> galaxy."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


_SHORT = frozenset({"gw", "uv"})
_STOP = frozenset(
    "the and for about with from into that this what which who how are was were any all "
    "other their them they its our your you not but can".split()
)
_DOMAIN_STEMS = frozenset(_stem(w) for w in DOMAIN)
