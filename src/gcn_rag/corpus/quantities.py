"""The quantity catalog: what astronomers measure and how the circulars write it, as data.

One :class:`~gcn_rag.corpus.quantity.Quantity` per quantity: its words in questions and right
before its value in circulars, units, plausible range, what makes a number not its value. A new
quantity is a new entry, not new code. Entries are tried in order (a narrower question word
first); a quantity applies to some event kinds ("how far?": a GRB's redshift).
"""

from __future__ import annotations

import re

from gcn_rag.corpus.quantity import (
    ANY,
    ASSUMED,
    DEGREES,
    EARTH,
    FLUENCE,
    FLUX,
    GRB,
    GW,
    KEV,
    NEUTRINO,
    NOT_A_MAGNITUDE,
    NOT_OBSERVED,
    OTHER,
    PER_YEAR,
    PHOTON_FLUX,
    PLANNED,
    RATE_AFTER,
    REFERENCE,
    SECONDS,
    Quantity,
    cue,
    event_kind,
    position,
    probability,
    words,
)

__all__ = ["ANY", "BY_KEY", "CATALOG", "GRB", "GW", "NEUTRINO", "OTHER", "Quantity", "event_kind"]

_BURSTS = (GRB, OTHER)
_DECAY = r"deca\w+|declin\w*|temporal|light[- ]?curve|fading"  # an index in time, not energy
_NOT_SPECTRAL = words(rf"{ASSUMED}|{_DECAY}")
_T_CUE = (  # "T90 (50-300 keV) duration is estimated by ... to be", "duration (T90) of"
    r"(?:\b{t}\b\s*(?:\([^)]{{0,30}}\))?\s*(?:duration\s*)?|duration\s*\({t}\)\s*)"
    r"(?:[\s,]+(?:estimated|measured|derived|calculated|computed)\b[^=;]{{0,70}}?\s)?"
    r"(?:(?:is|was|of|=|~|≈|:|about|approximately|estimated\s+(?:at|to\s+be)|,)\s*)*$"
)


# a question for a position, at its start ("Where on the sky was", "Coordinates of", "What is
# the best-fit localization of") or its end ("<event> coordinates?"): not one that mentions a
# position on the way ("a counterpart in the localization of")
POSITION = (
    r"^(?:what(?:'s|\s+(?:is|was|are|were))?\s+(?:the\s+)?(?:[\w-]+\s+){0,2}?|"
    r"(?:give|tell)\s+(?:me\s+)?(?:the\s+)?(?:[\w-]+\s+){0,2}?|[\w-]+\s+)?"
    r"(?:positions?|locations?|locali[sz]ations?|coordinates|directions?)\s+(?:of|for)\b|"
    r"^where\s+(?:on|in)\s+the\s+sky\b|\b(?:positions?|locations?|locali[sz]ations?|"
    r"coordinates)\s*\??$|"
    r"^where\s+(?:was|is|did|does)\b[^?]{0,50}\b(?:located|point\w*|come from|originat\w*)"
)


CATALOG: tuple[Quantity, ...] = (
    Quantity(
        key="t50",
        label="T50",
        unit="s",
        asked=words(r"\bT_?50\b"),
        mention=words(r"T_?50"),
        cue=re.compile(_T_CUE.format(t="T_?50"), re.I),
        units=SECONDS,
        low=0.0,
        high=100_000.0,
        kinds=_BURSTS,
        relative=0.10,
        retrieval=("t50",),
        by_instrument=True,
    ),
    Quantity(
        key="t90",
        label="T90",
        unit="s",
        asked=words(
            r"\bT_?90\b|\bduration\b|how long\b|how many seconds|"
            r"\blast(?:ed|ing)?\b[^?]{0,30}\?|"
            r"(?:length|long) (?:in|of) (?:seconds|time)|"
            r"\bseconds\b[^?]{0,40}\b(?:last|long|length)|"
            r"time ?(?:span|interval|window)|90\s*(?:%|per ?cent)\s*of (?:the )?"
            r"(?:counts|photons|fluence|emission|flux|signal)"
        ),
        mention=words(r"T_?90"),
        cue=re.compile(_T_CUE.format(t="T_?90"), re.I),
        units=SECONDS,
        low=0.0,
        high=100_000.0,
        kinds=_BURSTS,
        relative=0.10,
        retrieval=("t90",),
        by_instrument=True,
    ),
    Quantity(
        key="peak_photon_flux",
        label="peak photon flux",
        unit="ph/cm^2/s",
        asked=words(r"peak (?:photon|count)s? (?:flux|rate)|photons? per (?:square )?c"),
        mention=words(r"peak (?:photon )?flux"),
        cue=cue(r"peak (?:photon )?flux", gap=90),
        units=PHOTON_FLUX,
        unit_required=True,
        low=0.0,
        high=1e6,
        kinds=_BURSTS,
        relative=0.10,
        retrieval=("peak", "photon", "flux"),
        by_instrument=True,
    ),
    Quantity(
        key="peak_flux",
        label="peak energy flux",
        unit="erg/cm^2/s",
        asked=words(r"peak (?:energy )?flux|brightest (?:second|moment|point)|maximum flux"),
        mention=words(r"peak flux|peak energy flux"),
        cue=cue(r"peak (?:energy )?flux", gap=90),
        units=FLUX,
        unit_required=True,
        low=1e-14,
        high=1.0,
        scientific=True,
        kinds=_BURSTS,
        relative=0.10,
        retrieval=("peak", "flux"),
        by_instrument=True,
    ),
    Quantity(
        key="epeak",
        label="peak energy Epeak",
        unit="keV",
        asked=words(
            r"\bE_?peak\b|\bE_?p\b|\bE_?pk\b|peak (?:photon )?energy|\bnu\s*F\s*nu\b|\u03bdF\u03bd|"
            r"\bEF\(E\)|E\^?2\s*N|(?:spectr\w*|SED|energy distribution|power)\b[^?]{0,60}"
            r"\b(?:peak|maxim|turn(?:s|ing)? over)|"
            r"\b(?:peak|maxim\w*)\b[^?]{0,40}\b(?:spectr\w*|SED)\b"
        ),
        mention=words(r"E_?peak|\bE_?pk?\b|peak energy|nu\s*F\s*nu"),
        cue=cue(r"\bE_?peak\b|\bE_?p(?:,i)?\b|\bE_?pk\b|peak energy|nu\s*F\s*nu peak", gap=40),
        units=KEV,
        unit_required=True,
        low=1.0,
        high=100_000.0,
        kinds=_BURSTS,
        relative=0.10,
        reject=NOT_OBSERVED,
        retrieval=("epeak", "peak", "energy"),
        by_instrument=True,
    ),
    Quantity(
        key="fluence",
        label="fluence",
        unit="erg/cm^2",
        asked=words(
            r"\bfluence\b|energy (?:per|over|across|through) (?:a |each |every )?(?:unit )?"
            r"(?:area|square|cm|surface)|erg\s*(?:/|per)?\s*(?:square )?(?:cm|centimet)|"
            r"\bintegrated\b[^?]{0,40}\bflux\b|time-integrated|total energy (?:received|collected)"
        ),
        mention=words(r"fluence"),
        cue=cue(r"\bfluence\b", gap=110),
        units=FLUENCE,
        unit_required=True,
        not_after=RATE_AFTER,
        low=1e-12,
        high=1.0,
        scientific=True,
        kinds=_BURSTS,
        relative=0.10,
        retrieval=("fluence",),
        by_instrument=True,
    ),
    Quantity(
        key="eiso",
        label="isotropic-equivalent energy Eiso",
        unit="erg",
        asked=words(
            r"\bE_?iso\b|isotropic|energy (?:release|released|radiated|output|budget)|"
            r"energetics|how much energy|total (?:gamma-ray |radiated )?energy|how energetic"
        ),
        mention=words(r"E_?\{?iso|isotropic|gamma,\s*iso"),
        cue=cue(
            r"\bE_?\{?iso\}?(?:,\s*\w+)?|\bE_?\{?\\?gamma,\s*iso\}?|"
            r"isotropic[- ](?:equivalent )?(?:gamma-ray )?(?:radiated )?energy(?: release)?",
            gap=30,
        ),
        units=((r"erg\b(?!\s*(?:/|per)?\s*(?:cm|s\b))", 1.0),),
        not_after=RATE_AFTER,
        low=1e44,
        high=1e57,
        scientific=True,
        kinds=_BURSTS,
        relative=0.15,
        retrieval=("eiso", "isotropic", "energy"),
        by_instrument=True,
    ),
    Quantity(
        key="alpha",
        label="low-energy photon index alpha",
        unit="",
        asked=words(r"\balpha\b|low[- ]energy (?:photon |spectral |power[- ]law )?(?:index|slope)"),
        mention=words(r"alpha|low[- ]energy (?:photon )?index|\u03b1"),
        cue=cue(r"\balpha\b|\u03b1|low[- ]energy (?:photon |spectral )?index"),
        low=-3.0,
        high=2.0,
        kinds=_BURSTS,
        absolute=0.1,
        relative=0.0,
        reject=_NOT_SPECTRAL,
        retrieval=("alpha", "index"),
        by_instrument=True,
    ),
    Quantity(
        key="beta",
        label="high-energy photon index beta",
        unit="",
        asked=words(r"\bbeta\b|high[- ]energy (?:photon |spectral |power[- ]law )?(?:index|slope)"),
        mention=words(r"beta|high[- ]energy (?:photon )?index|\u03b2"),
        cue=cue(r"\bbeta\b|\u03b2|high[- ]energy (?:photon |spectral )?index"),
        low=-6.0,
        high=-1.0,
        kinds=_BURSTS,
        absolute=0.1,
        relative=0.0,
        reject=_NOT_SPECTRAL,
        retrieval=("beta", "index"),
        by_instrument=True,
    ),
    Quantity(
        key="photon_index",
        label="photon index",
        unit="",
        asked=words(r"photon index|spectral index|power[- ]law index|\bGamma\b|spectral slope"),
        mention=words(r"(?:photon|spectral|power[- ]law) index|Gamma|\u0393|index of the"),
        cue=cue(
            r"(?:photon|spectral|power[- ]law)(?: spectral)? index|\bGamma\b|\u0393"
            r"|index of the (?:power[- ]law|spectrum)",
            gap=20,
        ),
        low=-5.0,
        high=6.0,
        kinds=ANY,
        absolute=0.1,
        relative=0.0,
        reject=words(rf"{ASSUMED}|{_DECAY}|low[- ]energy|high[- ]energy|\bBand\b"),
        retrieval=("photon", "index"),
        by_instrument=True,
    ),
    Quantity(
        key="nh",
        label="absorbing column density NH",
        unit="cm^-2",
        asked=words(  # an X-ray absorption, not "absorption lines" (a redshift)
            r"column density|\bN_?H\b|hydrogen column|absorb|absorption (?:column|toward)|"
            r"(?:intrinsic|host|excess|X-ray|Galactic|extra-?galactic|total) absorption"
        ),
        mention=words(r"column|\bN_?\{?H\}?\b"),
        cue=cue(r"column(?: density)?|\bN_?\{?H\}?\b", gap=60),
        units=((r"cm\s*(?:\^|\*\*)?\s*\{?\s*(?:-|\ufffd+)\s*2\}?|cm-2", 1.0),),
        low=1e18,
        high=1e25,
        scientific=True,
        kinds=ANY,
        relative=0.15,
        retrieval=("column", "density"),
    ),
    Quantity(
        key="error_radius",
        label="error radius",
        unit="deg",
        asked=words(
            r"error (?:radius|circle|box|region)|uncertainty (?:radius|region)|"
            r"how (?:precise|accurate|well)[^?]{0,40}(?:locali|position)|"
            r"(?:localization|position(?:al)?) (?:accuracy|precision|uncertainty|error)"
        ),
        mention=words(r"uncertainty|error|radius|containment"),
        cue=cue(  # not "distance / offset error": an offset's error, no position's
            r"(?<!distance )(?<!offset )(?<!separation )"
            r"(?:(?:statistical |systematic |total |position(?:al)? )?(?:uncertainty|error)"
            r"(?: (?:circle|box))?(?: radius)?|radius|error (?:circle|box))",
            gap=25,
        ),
        units=DEGREES,
        unit_required=True,
        as_written=True,
        # a box, no radius; "6.3 arcsec from the UVOT position" an offset
        not_after=words(r"\s*(?:wide|long|across|in (?:RA|Dec)|x\s*\d|from\b|away\b|off\b)"),
        # a part, a search, an IPN annulus, the part of a region the Earth hides
        reject=words(rf"systematic (?:error|uncertainty)|tiling|tiled|annul\w*|{EARTH}"),
        interrupted=words(r"\b(?:distance|offset|separat\w*|away)\b"),  # another position's
        low=0.0,
        high=60.0,
        relative=0.15,
        retrieval=("uncertainty", "radius"),
        by_instrument=True,
    ),
    Quantity(
        key="magnitude",
        label="magnitude",
        unit="mag",
        asked=words(r"magnitude|\bmag\b|how bright|brightness|how faint"),
        mention=re.compile(
            r"mag|(?<![\w'/.])[ugrizyUBVRIJHKwC]\w{0,4}'?(?:[- ]band)?\s*(?:\((?:AB|Vega)\)\s*)?"
            r"(?:[=~<>≈≤≥]|of\b)|white|clear|unfiltered",
            re.I,
        ),
        cue=re.compile(
            r"(?:(?<![\w'/.])(?P<band>[ugrizyUBVRIJHK]|[ugriz]'|R_?c|I_?c|Ks|w[12]|uvw[12]|"
            r"uvm2|white|clear|CR|unfiltered)(?:[- ]band)?(?:\s*\((?:AB|Vega)\))?\s*"
            r"(?:mag(?:nitude)?\s*)?(?:=|~|≈|~=|<|>|≤|≥|of)\s*(?:~\s*)?"
            r"|(?:limiting |apparent )?magnitude(?: limit)?\s*(?:of|is|was|=|~|:|<|>)\s*(?:~\s*)?"
            r"(?:about |approximately )?)$"
        ),
        units=((r"mag\b|\(?AB\)?|\(?Vega\)?", 1.0),),
        not_after=NOT_A_MAGNITUDE,  # ... and "R = 16.48 mag for the USNO B-1 star"
        low=5.0,
        high=32.0,
        inverted=True,
        timed=True,
        kinds=ANY,
        # "..48.0s, R=7.82": a radius; "a redshift of z = 5.9": no z-band magnitude
        reject=words(
            rf"{REFERENCE}|{PLANNED}|\bredshifts?\b[^.;=]{{0,25}}\bz\s*[=~≈]\s*$|"
            r"\d+s\s*,\s*R\s*=\s*$|\bdec=[-+]?\d{1,2} \d\d \d\d(?:\.\d+)?\s+r=$"  # MASTER's radius
        ),
        instruments=("Swift-UVOT",),
        absolute=0.3,
        relative=0.0,
        retrieval=("magnitude", "mag"),
    ),
    probability(
        "has_ns",
        "probability of a neutron star (HasNS)",
        r"HasNS|(?:contain|include|ha[sv]e?)\w*[^?]{0,20}neutron star|neutron star mass",
        r"HasNS",
    ),
    probability(
        "has_remnant",
        "probability of a remnant (HasRemnant)",
        r"HasRemnant|remnant|ejecta|material outside|matter outside",
        r"HasRemnant",
    ),
    probability(
        "p_bns",
        "probability of a binary neutron star (BNS)",
        r"\bBNS\b|binary neutron star|two neutron stars|neutron star[- ]neutron star",
        r"\bBNS\b",
    ),
    probability(
        "p_nsbh",
        "probability of a neutron star-black hole (NSBH)",
        r"\bNSBH\b|neutron star[- ]black hole|black hole[- ]neutron star",
        r"\bNSBH\b",
    ),
    probability(
        "p_bbh",
        "probability of a binary black hole (BBH)",
        r"\bBBH\b|binary black hole|two black holes",
        r"\bBBH\b",
    ),
    probability(
        "p_mass_gap",
        "probability of a mass-gap object (MassGap)",
        r"mass[- ]?gap",
        r"MassGap|Mass Gap",
    ),
    probability(
        "p_terrestrial",
        "probability of a terrestrial origin",
        r"terrestrial|instrumental|\bglitch|not astrophysical",
        r"Terrestrial",
    ),
    Quantity(
        key="gw_distance",
        label="luminosity distance",
        unit="Mpc",
        asked=words(r"\bdistan(?:ce|t)\b|how far\b|\baway\b|\b[MG]pc\b|(?:mega|giga) ?parsec"),
        mention=words(r"distance|\bD_?L\b"),
        cue=cue(r"\b(?:luminosity )?distance(?: estimate)?|\bD_?L\b", gap=40),
        units=((r"Mpc\b", 1.0), (r"Gpc\b", 1000.0)),
        unit_required=True,
        low=0.01,
        high=100_000.0,
        kinds=(GW,),
        relative=0.15,
        retrieval=("distance", "mpc"),
        specific=words(r"luminosity distance|a posteriori|posterior|marginali[sz]ed|sky ?map"),
        foreign=words(r"galax|GLADE|\bhost\b|catalog|\bNGC\b|\bPGC\b|\bUGC\b"),
    ),
    Quantity(
        key="redshift",
        label="redshift",
        unit="",
        asked=words(
            r"\bredshift|\bz\b|\bdistance\b|\bdistant\b|how far\b|\brecession\b|\bz[- ]value"
        ),
        mention=words(
            r"redshift|(?<![\w'])z\s*(?:[=~≈:(]|of\b|is\b|was\b|at\b|around\b|about\b|approx)"
        ),
        cue=re.compile(
            r"(?:\bredshifts?|(?<![\w'])z)"
            r"(?:\s*(?:of|is|was|at|to|be|around|about|approximately|approx\.?|=|~|≈|~=|:|\(|,)"
            r"\s*)*(?:z\s*[=~≈:]\s*)?$",
            re.I,
        ),
        low=0.0,
        high=15.0,
        prefix="z = ",
        reject=words(rf"{ASSUMED}|intervening|foreground|absorber|\bexpect\w*|\bgalaxies\b"),
        kinds=_BURSTS,
        relative=0.01,
        absolute=0.01,
        instruments=(),  # a spectrograph's, never a gamma-ray or X-ray instrument's
        retrieval=("redshift",),
    ),
    Quantity(
        key="false_alarm_rate",
        label="false alarm rate",
        unit="per year",
        asked=words(
            r"false[- ]alarm|\bFAR\b|background (?:rate|alerts?|events?)|noise alone|by chance|"
            r"chance (?:rate|coincidence)|accidental|\bmimic|times (?:a|per|each) year|"
            r"per year|yearly rate|how (?:often|frequently)|"
            r"\bnoise\b[^?]{0,30}\b(?:produce|generate|create|cause|yield|make)"
        ),
        mention=words(r"false[- ]alarm|\bFAR\b"),
        cue=cue(r"false[- ]alarm[- ]rate|\bFAR\b", gap=60),
        units=PER_YEAR,
        unit_required=True,
        low=0.0,
        high=1e12,
        kinds=(NEUTRINO, GW),
        relative=0.10,
        retrieval=("false", "alarm", "rate"),
    ),
    Quantity(
        key="signalness",
        label="signalness",
        unit="",
        asked=words(
            r"signalness|astrophysical (?:origin|probability|purity)|"
            r"(?:probability|how likely|chances?|odds)\b[^?]{0,40}astrophysical"
        ),
        mention=words(r"signalness"),
        # "Signalness: 0.5263" as notices give it; "a signalness of just 20%", "signalness
        # (approximately 67%)", "the signalness of this event is thus 33%" as circulars do
        cue=cue(r"signalness", gap=25),
        units=((r"%|per ?cent", 0.01),),
        low=0.0,
        high=1.0,
        kinds=(NEUTRINO,),
        relative=0.05,
        retrieval=("signalness",),
    ),
    Quantity(
        key="neutrino_energy",
        label="most probable neutrino energy",
        unit="TeV",
        asked=words(
            r"(?:neutrino|most probable|muon)\b[^?]{0,30}\benergy\b|\benergy of the neutrino"
        ),
        mention=words(r"energy|\bE_?nu\b"),
        cue=cue(r"(?:neutrino|most probable|estimated|deposited|reconstructed)\s+energy|\bE_?nu\b"),
        units=((r"TeV", 1.0), (r"GeV", 0.001), (r"PeV", 1000.0)),
        unit_required=True,
        low=0.001,
        high=1e6,
        kinds=(NEUTRINO,),
        relative=0.10,
        retrieval=("energy", "tev"),
    ),
    # "where on the sky", "the localization of": a position, answered with RA and Dec
    position(0, "ra", "right ascension", rf"\bR\.?A\b|{POSITION}", r"\bR\.?A\b\.?", (0.0, 360.0)),
    position(1, "dec", "declination", r"\bDec\b", r"\bDec(?:l)?\b\.?", (-90.0, 90.0)),
)

BY_KEY = {quantity.key: quantity for quantity in CATALOG}


def asked_quantity(question: str, kind: str | None = None) -> Quantity | None:
    """The catalog quantity a question asks for (of an event of ``kind``), or None."""
    for quantity in CATALOG:
        if (kind is None or kind in quantity.kinds) and quantity.asked.search(question):
            return quantity
    return None
