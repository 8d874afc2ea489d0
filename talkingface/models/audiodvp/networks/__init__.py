"""AudioDVP's networks in the layouts of the authors' files (docs: 3dmm_methods.md §1.3–1.5, §9): ``ATNetEncoder``
(ATVGnet's audio encoder), ``AudioExpression`` (audio features -> expression coefficients), ``UnetGenerator`` (the
neural face renderer) and ``NLayerDiscriminator`` (its PatchGAN); ``convert`` reads and writes the files."""
from .atnet import ATNetEncoder, encode_sequence
from .audio2expression import AudioExpression
from .convert import convert_release, release_example, release_kind
from .renderer import NLayerDiscriminator, PatchDiscriminator, RefineModule, UnetBlock, UnetGenerator

__all__ = ["ATNetEncoder", "AudioExpression", "NLayerDiscriminator", "PatchDiscriminator", "RefineModule",
           "UnetBlock", "UnetGenerator", "convert_release", "encode_sequence", "release_example", "release_kind"]
