"""How each DGA family makes its names, for the leave-style-out evaluation.

Every entry was decided by reading samples of the family in ``../shared/data`` (the example
beside it is one of them). Four styles:

- ``random_letters``: letters drawn (near) uniformly, no digits, not pronounceable;
- ``hex_digit``: hexadecimal digests or letter-and-digit strings;
- ``cv_syllable``: consonant/vowel syllables, pronounceable but not words;
- ``words``: concatenated dictionary words.

Families not in this table (one-to-eight-name families such as ``blackhole``, ``mirai``,
``madmax``, and ``others``, which mixes families) are left out of the protocol entirely, so
they cannot carry a held-out family's names into training.
"""

from __future__ import annotations

STYLES = ("random_letters", "hex_digit", "cv_syllable", "words")

# family -> (style, reason with an example)
FAMILY_STYLE: dict[str, tuple[str, str]] = {
    "conficker": ("random_letters", "4-11 random letters (lqtojsns.ws)"),
    "cryptolocker": ("random_letters", "12-15 random letters (iqawnosxrpjh.ru)"),
    "tinba": ("random_letters", "12 random letters (bfmhiovjkkho.com)"),
    "ramdo": ("random_letters", "16 letters from a 13-letter alphabet (ywyoqecumsouiiwy.org)"),
    "gameover_p2p": ("random_letters", "22-28 random letters (pcmtkyvnrxkeihevglnzlr.ru)"),
    "murofet": ("random_letters", "16 random letters (kvpomsrfqquniutm.com)"),
    "monerominer": ("random_letters", "12-16 random letters (pwxntkrtsvpowri.net)"),
    "necro": ("random_letters", "16 random letters (vqskijhygceakivm.xyz)"),
    "necurs": ("random_letters", "7-21 random letters (nfbjanqglwvchhqjxwgpl.de)"),
    "ramnit": ("random_letters", "8-19 random letters (rctwkfonbmafxebacs.com)"),
    "ranbyus": ("random_letters", "14-17 random letters (drhaipynjrmhfefeb.com)"),
    "dircrypt": ("random_letters", "10-20 random letters (kvmihtamuopvagdlrwzg.com)"),
    "emotet": ("random_letters", "16 random letters (athrcxkejrvjwcnw.eu)"),
    "fobber": ("random_letters", "10 random letters (qdyraobapd.com)"),
    "locky": ("random_letters", "7-17 random letters (onctavfcdwlpgmglw.info)"),
    "pykspa": ("random_letters", "6-12 random letters (ixpxqrwhpopj.info)"),
    "kraken": ("random_letters", "6-11 random letters, dynamic DNS (cwboriacwxl.com)"),
    "nymaim": ("random_letters", "6-11 random letters in this data (vodyrhlspd.biz)"),
    "padcrypt": ("random_letters", "16 letters from a 9-letter alphabet (bnmfladdaccalkff.com)"),
    "abcbot": ("random_letters", "permutations of 9 fixed letters (hsurfoxpt.com)"),
    "tofsee": ("random_letters", "a fixed 6-letter stem and one letter (eafeafa.ch)"),
    "gameover": ("hex_digit", "25-27 letters and digits (1q4w97w9rn2do1ojj5p4c4jajp.biz)"),
    "qadars": ("hex_digit", "12 letters and digits (a7wtafw5uro1.net)"),
    "corebot": ("hex_digit", "letters and digits, dynamic DNS (chwt12kv1ry8c8c.ddns.net)"),
    "tinynuke": ("hex_digit", "32 hex digits, an MD5 (9eafe9e0d45cff55e54f8367886c44d5.com)"),
    "bamital": ("hex_digit", "32 hex digits, an MD5 (5163245674ee81e86e41a7cdec85c157.org)"),
    "antavmu": ("hex_digit", "8 hex digits (7d47a215.org)"),
    "pushdo": ("cv_syllable", "consonant-vowel syllables (biltirna.ru, vahiqeacucu.com)"),
    "simda": ("cv_syllable", "alternating consonants and vowels (tucakaqalav.eu)"),
    "symmi": ("cv_syllable", "consonant-vowel pairs (qupoboimqabaow.ddns.net)"),
    "vawtrak": ("cv_syllable", "pronounceable syllables (edlifegneci.com)"),
    "banjori": ("cv_syllable", "4 random letters on a fixed pronounceable seed "
                               "(eqgtthoodivettewl.com)"),
    "matsnu": ("words", "3-6 English words (southstrokeaddressbikeneck.com)"),
    "suppobox": ("words", "two English words (variouswritten.net)"),
    "rovnix": ("words", "words of the US Declaration of Independence "
                        "(separationhathamount.com)"),
    "gozi": ("words", "words and word fragments of a text (termthatauthorizes.ru)"),
}


def style_of(family: str) -> str | None:
    entry = FAMILY_STYLE.get(family)
    return entry[0] if entry else None
