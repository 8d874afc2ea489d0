"""The official VideoReTalking code (OpenTalker/video-retalking at d32e8e5) imported for
``benchmarks/videoretalking_dubbing.py``: its networks, and the enhancement chain of ``inference.py``'s steps 5 and 6.

The files are exported one by one with ``git show <commit>:<path>`` from the bare mirror (``git archive`` of these
mirrors fails on the blobs they lack), as ``tests/models/videoretalking/fixtures/make_*_fixture.py`` do, and imported
with the same kind of shims (nothing of the official code is copied or edited):

- bare packages (``models``, ``utils``, ``face_model``, ``face_parse``, ``face_detect``, ``gfpgan``, ``gfpgan.archs``,
  ``official_face3d``) on the exported folders, so that no ``__init__.py`` pulling in training code runs;
- ``basicsr``: ``default_init_weights`` a no-op (every tensor is then loaded from our state dicts),
  ``ARCH_REGISTRY.register()`` returning the class; ``img2tensor`` / ``tensor2img`` from basicsr 1.4.2's source
  distribution when it is present (GFPGANer's restore step);
- ``torchvision``: not installable beside this torch (docs/videoretalking.md), so a module holding what the chain
  calls: ``transforms.functional.normalize`` (torchvision's arithmetic: ``sub_(mean).div_(std)``) and
  ``utils.make_grid`` (imported by basicsr, unused);
- ``kornia`` and the ArcFace backbones (imported by Deep3DFaceRecon's ``networks.py``, unused by the ReconNet);
- the two RetinaFace detectors (GPEN's ``RetinaFaceDetection`` and facexlib's ``init_detection_model``) need
  torchvision's ResNet-50 body; they are stand-ins that run the same RetinaFace-R50 network (ours, with the same
  random weights) on the image prepared as the official ``detect`` prepares it and report the known face (random
  weights find none); everything after detection (alignment, GPEN, ParseNet, GFPGAN, warps, blends) is the
  official code;
- ``utils.inference_utils`` is not imported (it imports the face-alignment detectors and Deep3DFaceRecon);
  ``Laplacian_Pyramid_Blending_with_mask`` is taken out of the file by its ``def`` (``ast``) and executed as it
  stands, with OpenCV.

OpenCV: ``/tmp/cv4`` (opencv-python-headless 4.10, added to ``sys.path`` when present); without it the chain and the
official blend are reported as not run.
"""
from __future__ import annotations

import ast
import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from fixture_tools import export_official_files, git_revision, load_module, stub_module  # noqa: E402

MIRROR = Path("/work/.mirror/OpenTalker+video-retalking/repo")
COMMIT = "d32e8e58248255e2d243eeaf3cba545dbe505ca8"
FACEXLIB_MIRROR = Path("/work/.mirror/xinntao+facexlib/repo")
FACEXLIB_REV = "v0.2.5"  # VideoReTalking's requirements.txt pin
BASICSR = Path("/tmp/gfpgan-fixture/basicsr-1.4.2")  # basicsr 1.4.2's sdist, unpacked (tests/fixtures/gfpgan)
CV2_PATH = Path("/tmp/cv4")

GPEN = "third_part/GPEN"
NETWORK_FILES = (
    "models/DNet.py", "models/LNet.py", "models/ENet.py", "models/base_blocks.py", "models/ffc.py",
    "models/transformer.py", "utils/flow_util.py", "utils/inference_utils.py", "inference.py",
    f"{GPEN}/face_model/gpen_model.py", f"{GPEN}/face_model/op/__init__.py", f"{GPEN}/face_model/op/fused_act.py",
    f"{GPEN}/face_model/op/upfirdn2d.py", f"{GPEN}/face_parse/parse_model.py", f"{GPEN}/face_parse/blocks.py",
    "third_part/GFPGAN/gfpgan/archs/gfpganv1_clean_arch.py", "third_part/GFPGAN/gfpgan/archs/stylegan2_clean_arch.py",
    "third_part/face3d/models/networks.py")
CHAIN_FILES = (
    f"{GPEN}/gpen_face_enhancer.py", f"{GPEN}/align_faces.py", f"{GPEN}/face_model/face_gan.py",
    f"{GPEN}/face_parse/face_parsing.py", f"{GPEN}/face_parse/model.py", f"{GPEN}/face_parse/resnet.py",
    "third_part/GFPGAN/gfpgan/utils.py")
FACEXLIB_FILES = ("facexlib/utils/face_restoration_helper.py", "facexlib/utils/misc.py")
GFPGAN_RELEASE = dict(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                      num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)


def export(paths=NETWORK_FILES + CHAIN_FILES, mirror: Path = MIRROR, rev: str = COMMIT) -> tuple[Path, str]:
    """``(folder, commit)``: the files at ``rev`` of the mirror, each written with ``git show``."""
    return export_official_files(mirror, paths, rev)


def opencv() -> types.ModuleType | None:
    """OpenCV (from ``/tmp/cv4`` when present), or None."""
    if CV2_PATH.is_dir() and str(CV2_PATH) not in sys.path:
        sys.path.append(str(CV2_PATH))
    try:
        import cv2

        cv2.setNumThreads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        return cv2
    except ImportError:
        return None


def _torchvision_standin() -> None:
    """The few torchvision names the official chain imports (torchvision cannot be installed beside this torch)."""
    if "torchvision" in sys.modules:
        return

    def normalize(tensor, mean, std, inplace=False):  # torchvision.transforms.functional.normalize
        tensor = tensor if inplace else tensor.clone()
        mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std)

    def unused(*args, **kwargs):
        raise RuntimeError("torchvision stand-in: not used by the benchmarked code")

    functional = stub_module("torchvision.transforms.functional", normalize=normalize)
    transforms = stub_module("torchvision.transforms", functional=functional, Compose=unused, ToTensor=unused,
                             Normalize=unused)
    utils = stub_module("torchvision.utils", make_grid=unused)
    stub_module("torchvision", transforms=transforms, utils=utils)


def laplacian_blend(files: Path, cv2) -> Callable:
    """``Laplacian_Pyramid_Blending_with_mask`` of ``utils/inference_utils.py``, taken out by its ``def`` and run
    as it stands with OpenCV and NumPy."""
    source = (files / "utils/inference_utils.py").read_text()
    node = next(n for n in ast.parse(source).body
                if isinstance(n, ast.FunctionDef) and n.name == "Laplacian_Pyramid_Blending_with_mask")
    namespace: dict[str, Any] = {"np": np, "cv2": cv2}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(files / "utils/inference_utils.py"), "exec"),
         namespace)
    return namespace["Laplacian_Pyramid_Blending_with_mask"]


def step6_statements(files: Path) -> str:
    """``inference.py``'s step-6 loop body for one frame, from ``y1, y2, x1, x2 = c`` to the final
    ``enhancer.process(pp, xf, ...)``, dedented (run with ``p``, ``xf``, ``c``, ``restorer``, ``enhancer``)."""
    import textwrap

    lines = (files / "inference.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "y1, y2, x1, x2 = c" in line)
    end = next(i for i in range(start, len(lines)) if "enhancer.process(pp, xf" in lines[i])
    return textwrap.dedent("\n".join(lines[start:end + 1]))


def import_networks(files: Path) -> types.SimpleNamespace:
    """The official network classes: ``DNet``, ``LNet``, ``ENet``, ``FullGenerator`` (GPEN), ``GFPGANv1Clean``,
    ``ParseNet``, ``define_net_recon`` (Deep3DFaceRecon's ReconNet)."""
    stub_module("basicsr")
    stub_module("basicsr.archs")
    stub_module("basicsr.archs.arch_util", default_init_weights=lambda *args, **kwargs: None)
    stub_module("basicsr.utils")
    stub_module("basicsr.utils.registry",
                ARCH_REGISTRY=types.SimpleNamespace(register=lambda *args, **kwargs: lambda cls: cls))
    stub_module("basicsr.utils.download_util", load_file_from_url=None)
    for package in ("models", "utils"):
        stub_module(package, (files / package).resolve())
    gpen = (files / GPEN).resolve()
    stub_module("face_model", gpen / "face_model")
    stub_module("face_parse", gpen / "face_parse")
    gfpgan = (files / "third_part/GFPGAN/gfpgan").resolve()
    stub_module("gfpgan", gfpgan)
    stub_module("gfpgan.archs", gfpgan / "archs")
    stub_module("kornia")
    stub_module("kornia.geometry", warp_affine=None)
    face3d = (files / "third_part/face3d/models").resolve()
    stub_module("official_face3d", face3d)
    stub_module("official_face3d.arcface_torch")
    stub_module("official_face3d.arcface_torch.backbones", get_model=None)
    return types.SimpleNamespace(
        DNet=importlib.import_module("models.DNet").DNet,
        LNet=importlib.import_module("models.LNet").LNet,
        ENet=importlib.import_module("models.ENet").ENet,
        FullGenerator=importlib.import_module("face_model.gpen_model").FullGenerator,
        GFPGANv1Clean=importlib.import_module("gfpgan.archs.gfpganv1_clean_arch").GFPGANv1Clean,
        ParseNet=importlib.import_module("face_parse.parse_model").ParseNet,
        define_net_recon=importlib.import_module("official_face3d.networks").define_net_recon)


def _load(net: torch.nn.Module, state: dict, strict: bool = True) -> torch.nn.Module:
    missing, unexpected = net.load_state_dict(state, strict=strict)
    return net.eval()


def official_networks(ns: types.SimpleNamespace, ours: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
    """The official networks built as ``inference.py`` builds them, holding our weights (``ours``: ``dnet``,
    ``lnet``, ``enet``, ``gpen``, ``gfpgan``, ``parsenet``, ``recon``; each optional): D-Net, L-Net and the E-Net
    around it (``load_network``: ``ENet(lnet=LNet())``), ``FullGenerator(512, 512, 8, 2, narrow=1, device='cpu')``
    (``FaceGAN``), ``GFPGANv1Clean(**GFPGAN_RELEASE)`` (``GFPGANer(arch='clean')``), ``ParseNet(512, 512, 32, 64, 19,
    norm_type='bn', relu_type='LeakyReLU', ch_range=[32, 256])`` (``FaceParse``) and
    ``define_net_recon('resnet50', use_last_fc=False, init_path='')`` (``load_face3d_net``). Layouts are checked
    by strict loads (E-Net: its own keys, the inner L-Net's from ``lnet``, as ``load_network`` does)."""
    out: dict[str, torch.nn.Module] = {}
    if "dnet" in ours:
        out["dnet"] = _load(ns.DNet(), ours["dnet"].state_dict())
    if "lnet" in ours:
        lnet = _load(ns.LNet(), ours["lnet"].state_dict())
        out["lnet"] = lnet
        if "enet" in ours:
            enet = ns.ENet(lnet=lnet)
            missing, unexpected = enet.load_state_dict(ours["enet"].state_dict(), strict=False)
            if unexpected or any(not key.startswith("low_res.") for key in missing):
                raise RuntimeError(f"official ENet layout differs: missing {missing[:5]}, unexpected {unexpected[:5]}")
            out["enet"] = enet.eval()
    if "gpen" in ours:
        out["gpen"] = _load(ns.FullGenerator(512, 512, 8, 2, narrow=1, device="cpu"), ours["gpen"].state_dict())
    if "gfpgan" in ours:
        out["gfpgan"] = _load(ns.GFPGANv1Clean(**GFPGAN_RELEASE), ours["gfpgan"].state_dict())
    if "parsenet" in ours:
        out["parsenet"] = _load(ns.ParseNet(512, 512, 32, 64, 19, norm_type="bn", relu_type="LeakyReLU",
                                            ch_range=[32, 256]), ours["parsenet"].state_dict())
    if "recon" in ours:
        out["recon"] = _load(ns.define_net_recon("resnet50", use_last_fc=False, init_path=""),
                             ours["recon"].state_dict())
    return out


# ---- the enhancement chain ---------------------------------------------------------------------------------------
class GpenDetectorStandIn:
    """GPEN's ``RetinaFaceDetection`` (``detect(img) -> (dets (K, 5), landms (K, 10) [x1..x5, y1..y5])``): ``detector``
    (our ``RetinaFaceDetector`` around the known-face network) on the BGR image, prepared as GPEN prepares it."""

    def __init__(self, detector):
        self.detector = detector

    def detect(self, img, *args, **kwargs):
        from talkingface.face.retinaface import to_gpen_landmarks

        dets, points = self.detector.detect(img, color="bgr")
        return dets, to_gpen_landmarks(points)


class FacexlibDetectorStandIn:
    """facexlib's RetinaFace (``detect_faces(img, threshold) -> (K, 15)`` boxes, scores, interleaved points):
    ``talkingface.models.videoretalking.enhance.facexlib_faces`` (facexlib's post-processing) on ``detector``."""

    def __init__(self, detector):
        self.detector = detector

    def detect_faces(self, image, conf_threshold=0.8, nms_threshold=0.4, use_origin_size=True):
        from talkingface.models.videoretalking.enhance import facexlib_faces

        dets, points = facexlib_faces(self.detector, np.asarray(image))
        return np.concatenate([dets, points.reshape(len(points), 10)], axis=1)


def import_chain(files: Path, detector, facexlib_files: Path, basicsr: Path = BASICSR) -> types.SimpleNamespace:
    """``FaceEnhancement`` (GPEN's enhancer) and ``GFPGANer`` as ``inference.py`` imports them, after
    ``import_networks``; ``detector``: our ``RetinaFaceDetector`` that both detector stand-ins run."""
    cv2 = opencv()
    if cv2 is None:
        raise ImportError("OpenCV not found (pip install --target /tmp/cv4 opencv-python-headless==4.10.0.84)")
    if not (basicsr / "basicsr/utils/img_util.py").is_file():
        raise ImportError(f"basicsr 1.4.2's source distribution not found at {basicsr} (GFPGANer's img2tensor / "
                          "tensor2img; tests/fixtures/gfpgan/make_fixture.py says where it comes from)")
    _torchvision_standin()
    gpen = (files / GPEN).resolve()
    if str(gpen) not in sys.path:
        sys.path.insert(0, str(gpen))
    stub_module("face_detect")
    stub_module("face_detect.retinaface_detection",
                RetinaFaceDetection=lambda base_dir, device: GpenDetectorStandIn(detector))
    blend = laplacian_blend(files, cv2)
    stub_module("utils.inference_utils", Laplacian_Pyramid_Blending_with_mask=blend)
    img_util = load_module(basicsr / "basicsr/utils/img_util.py", "basicsr.utils.img_util")
    sys.modules["basicsr.utils"].img2tensor = img_util.img2tensor
    sys.modules["basicsr.utils"].tensor2img = img_util.tensor2img
    root = facexlib_files.resolve()
    stub_module("facexlib", root / "facexlib")
    stub_module("facexlib.utils", root / "facexlib/utils")
    stub_module("facexlib.parsing", init_parsing_model=lambda *args, **kwargs: None)
    stub_module("facexlib.detection", init_detection_model=lambda *args, **kwargs: FacexlibDetectorStandIn(detector))
    stub_module("gfpgan.archs.gfpganv1_arch", GFPGANv1=None)
    stub_module("gfpgan.archs.gfpgan_bilinear_arch", GFPGANBilinear=None)
    return types.SimpleNamespace(FaceEnhancement=importlib.import_module("gpen_face_enhancer").FaceEnhancement,
                                 GFPGANer=importlib.import_module("gfpgan.utils").GFPGANer, cv2=cv2,
                                 blend=blend, step6=step6_statements(files))


def build_chain(chain: types.SimpleNamespace, folder: Path, gpen: torch.nn.Module, gfpgan: torch.nn.Module,
                parsenet: torch.nn.Module) -> tuple[Any, Any]:
    """``(enhancer, restorer)`` as ``inference.py`` builds them on CPU, reading our weights from files written to
    ``folder`` (``GPEN-BFR-512.pth``, ``ParseNet-latest.pth`` raw state dicts, ``GFPGANv1.3.pth`` as
    ``{'params_ema': ...}``)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(gpen.state_dict(), folder / "GPEN-BFR-512.pth")
    torch.save(parsenet.state_dict(), folder / "ParseNet-latest.pth")
    torch.save({"params_ema": gfpgan.state_dict()}, folder / "GFPGANv1.3.pth")
    enhancer = chain.FaceEnhancement(base_dir=str(folder), size=512, model="GPEN-BFR-512", use_sr=False,
                                     sr_model="rrdb_realesrnet_psnr", channel_multiplier=2, narrow=1, device="cpu")
    restorer = chain.GFPGANer(model_path=str(folder / "GFPGANv1.3.pth"), upscale=1, arch="clean",
                              channel_multiplier=2, bg_upsampler=None)
    return enhancer, restorer


def facexlib_export(rev: str = FACEXLIB_REV) -> Path:
    if not git_revision(FACEXLIB_MIRROR, rev):
        raise ImportError(f"no facexlib mirror with {rev} at {FACEXLIB_MIRROR}")
    return export_official_files(FACEXLIB_MIRROR, FACEXLIB_FILES, rev)[0]
