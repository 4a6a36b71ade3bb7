"""multibone.io.read_radiograph / read_image_size: formats, DICOM grey-level steps, bad inputs.

Reference values come from pydicom (modality LUT, VOI LUT, windowing), Pillow
(grey conversion) and the real radiographs of the ``pydicom-data`` package.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import MPEG2MPML, ExplicitVRLittleEndian

import multibone.io.radiograph as radiograph_mod
from multibone.cli import main
from multibone.errors import ImageReadError
from multibone.io import read_image_size, read_radiograph

SECRETS = {
    "PatientName": "Doe^Jane",
    "PatientID": "SECRET-4711",
    "InstitutionName": "St Elsewhere Hospital",
    "PatientBirthDate": "19700101",
    "AccessionNumber": "ACC-99881",
}


def make_dicom(
    path: Path,
    arr: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    rescale: tuple[float, float] | None = None,
    voi_lut: np.ndarray | None = None,
    voi_lut_bits: int = 16,
    pixel_data: bool = True,
    identifiers: bool = True,
) -> Path:
    """Write a small single- or multi-frame DICOM (Explicit VR Little Endian) with pydicom."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if identifiers:
        for key, value in SECRETS.items():
            setattr(ds, key, value)
    ds.set_pixel_data(arr, photometric, bits_stored, generate_instance_uid=False)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if voi_lut is not None:
        item = Dataset()
        # Both have ambiguous VRs (US/SS, US/OW): state US explicitly.
        item.add_new("LUTDescriptor", "US", [len(voi_lut), 0, voi_lut_bits])
        item.add_new("LUTData", "US", [int(v) for v in voi_lut])
        ds.VOILUTSequence = [item]
    if not pixel_data:
        del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(height: int = 32, width: int = 48, top: int = 4095) -> np.ndarray:
    """uint16 (H, W) ramp covering 0..top."""
    return np.linspace(0, top, height * width).round().astype(np.uint16).reshape(height, width)


def rg(name: str) -> Path:
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name)
    if found is None:
        pytest.skip(f"{name} not available (install pydicom-data)")
    return Path(found)


# --------------------------------------------------------------------------- real radiographs


@pytest.mark.realdata
@pytest.mark.parametrize("stem", ["RG1", "RG3"])
def test_lossless_j2k_equals_uncompressed(stem):
    a = read_radiograph(rg(f"{stem}_UNCR.dcm"))
    b = read_radiograph(rg(f"{stem}_J2KR.dcm"))
    assert b.transfer_syntax.startswith("JPEG 2000")
    np.testing.assert_array_equal(a.pixels, b.pixels)


@pytest.mark.realdata
@pytest.mark.parametrize("stem", ["RG1", "RG3"])
def test_lossy_j2k_close_to_uncompressed(stem):
    a = read_radiograph(rg(f"{stem}_UNCR.dcm")).pixels
    b = read_radiograph(rg(f"{stem}_J2KI.dcm")).pixels
    assert a.shape == b.shape
    assert np.abs(a - b).max() < 0.05
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


@pytest.mark.realdata
def test_real_radiograph_contract_and_header_size():
    path = rg("RG3_J2KI.dcm")
    r = read_radiograph(path)
    assert r.pixels.dtype == np.float32 and r.pixels.ndim == 2
    assert 0.0 <= r.pixels.min() and r.pixels.max() <= 1.0
    assert (r.format, r.photometric, r.bits, r.voi) == ("dicom", "MONOCHROME1", 10, "window")
    assert r.source == "RG3_J2KI.dcm"
    assert read_image_size(path) == r.pixels.shape == (1760, 1760)


@pytest.mark.realdata
def test_bone_is_bright_in_monochrome1_radiographs():
    # RG3 is a lower-leg radiograph (MONOCHROME1). Row 480: tibial shaft near
    # x=870, soft tissue of the calf near x=680, air beside the leg near x=530
    # (located by eye on the PNG written by `multibone inspect`).
    p = read_radiograph(rg("RG3_UNCR.dcm")).pixels
    bone, soft, air = (
        p[460:500, 850:890].mean(),
        p[460:500, 660:700].mean(),
        p[460:500, 510:550].mean(),
    )
    assert bone > soft + 0.2 > air + 0.3
    # RG1 is a chest radiograph: spine/mediastinum brighter than lung.
    q = read_radiograph(rg("RG1_UNCR.dcm")).pixels
    assert q[1300:1400, 880:960].mean() > q[500:560, 430:490].mean() + 0.2


@pytest.mark.realdata
def test_voi_lut_sequence_matches_pydicom():
    path = rg("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    expected = pydicom.pixels.apply_voi(ds.pixel_array, ds) / 65535.0  # LUT entries 16-bit
    r = read_radiograph(path)
    assert r.voi == "voi_lut"
    np.testing.assert_allclose(r.pixels, expected, atol=1e-6)


@pytest.mark.realdata
def test_modality_lut_sequence_matches_pydicom():
    path = rg("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    values = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    expected = (values - values.min()) / (values.max() - values.min())  # no VOI: min-max
    r = read_radiograph(path)
    assert r.voi == "minmax"
    np.testing.assert_allclose(r.pixels, expected, atol=1e-6)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_colour_dicom_becomes_luma_grey(name):
    path = rg(name)
    rgb = pydicom.dcmread(path).pixel_array  # pydicom converts YBR_FULL to RGB
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64) / 255.0
    r = read_radiograph(path)
    assert r.pixels.shape == rgb.shape[:2]
    np.testing.assert_allclose(r.pixels, expected, atol=1 / 255 + 1e-6)  # PIL rounds to uint8


# --------------------------------------------------------------------------- synthetic DICOM


@pytest.mark.parametrize("window", [None, (2000.0, 1000.0)])
def test_monochrome1_is_inverted_twin_of_monochrome2(tmp_path, window):
    arr = ramp()
    m2 = read_radiograph(make_dicom(tmp_path / "m2.dcm", arr, window=window)).pixels
    m1 = read_radiograph(
        make_dicom(tmp_path / "m1.dcm", arr, window=window, photometric="MONOCHROME1")
    ).pixels
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    # MONOCHROME2: stored value up = brighter; MONOCHROME1: the reverse.
    assert m2[-1, -1] > m2[0, 0] and m1[-1, -1] < m1[0, 0]


@pytest.mark.parametrize("function", [None, "LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("window", [(2000.0, 1000.0), (100.0, 1.0), (4000.0, 300.0)])
def test_windowing_matches_pydicom(tmp_path, function, window):
    arr = ramp()
    path = make_dicom(tmp_path / "w.dcm", arr, window=window, voi_function=function)
    ds = pydicom.dcmread(path)
    # pydicom maps into [0, 2**BitsStored - 1] for unsigned data without rescale
    expected = pydicom.pixels.apply_windowing(arr.copy(), ds) / 4095.0
    r = read_radiograph(path)
    assert r.voi == "window"
    np.testing.assert_allclose(r.pixels, expected, atol=1e-6)


def test_rescale_is_applied_before_window(tmp_path):
    arr = ramp()
    path = make_dicom(
        tmp_path / "r.dcm",
        arr,
        rescale=(2.0, -1000.0),
        window=(3000.0, 2000.0),
        voi_function="LINEAR_EXACT",
    )
    expected = np.clip((2.0 * arr - 1000.0 - 3000.0) / 2000.0 + 0.5, 0, 1)
    np.testing.assert_allclose(read_radiograph(path).pixels, expected, atol=1e-6)


def test_no_voi_uses_min_max_of_values(tmp_path):
    arr = ramp(top=3000) + 500
    r = read_radiograph(make_dicom(tmp_path / "n.dcm", arr))
    assert r.voi == "minmax"
    np.testing.assert_allclose(r.pixels, (arr - 500.0) / 3000.0, atol=1e-6)


def test_invalid_window_falls_back_to_min_max(tmp_path, caplog):
    arr = ramp()
    r = read_radiograph(make_dicom(tmp_path / "z.dcm", arr, window=(2000.0, 0.0)))
    assert r.voi == "minmax"
    np.testing.assert_allclose(r.pixels, arr / 4095.0, atol=1e-6)
    assert "invalid window" in caplog.text


def test_constant_image_without_window_is_black(tmp_path):
    r = read_radiograph(make_dicom(tmp_path / "c.dcm", np.full((8, 8), 700, np.uint16)))
    assert r.pixels.max() == 0.0 and r.pixels.dtype == np.float32


def test_voi_lut_wins_over_window_and_handles_12bit_entries(tmp_path):
    arr = ramp()
    lut = np.sqrt(np.arange(4096) / 4095.0) * 4095.0  # 12-bit entries under a 16-bit descriptor
    path = make_dicom(tmp_path / "l.dcm", arr, window=(2000.0, 1000.0), voi_lut=lut.round())
    ds = pydicom.dcmread(path)
    r = read_radiograph(path)
    assert r.voi == "voi_lut"
    expected = pydicom.pixels.apply_voi(arr, ds) / 4095.0
    np.testing.assert_allclose(r.pixels, expected, atol=1e-6)
    assert r.pixels.max() == pytest.approx(1.0)


def test_raw_dicom_without_preamble_is_read(tmp_path):
    arr = ramp()
    normal = make_dicom(tmp_path / "a.dcm", arr, window=(2000.0, 1000.0))
    ds = pydicom.dcmread(normal)
    raw = tmp_path / "raw.dcm"
    del ds.file_meta
    ds.preamble = None
    ds.save_as(raw, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    assert raw.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_radiograph(raw).pixels, read_radiograph(normal).pixels)
    assert read_image_size(raw) == arr.shape


def test_no_dicom_identifier_reaches_output_or_logs(tmp_path, caplog, capsys):
    path = make_dicom(tmp_path / "case.dcm", ramp(), window=(2000.0, 1000.0))
    caplog.set_level(logging.DEBUG)
    r = read_radiograph(path)
    assert main(["inspect", str(path), "--roi", "1,1,20,20", "--png", str(tmp_path / "o.png")]) == 0
    out = capsys.readouterr()
    multi = make_dicom(tmp_path / "multi.dcm", np.stack([ramp()] * 2))
    with pytest.raises(ImageReadError) as err:
        read_radiograph(multi)
    text = "\n".join([repr(r), out.out, out.err, caplog.text, str(err.value)])
    for secret in SECRETS.values():
        assert secret not in text
        assert secret.replace("^", " ") not in text


# --------------------------------------------------------------------------- PNG / JPEG


@pytest.mark.parametrize("dtype,top,bits", [(np.uint8, 255, 8), (np.uint16, 65535, 16)])
def test_png_grey_scaled_by_bit_depth(tmp_path, dtype, top, bits):
    arr = np.linspace(0, top, 40 * 30).round().astype(dtype).reshape(40, 30)
    path = tmp_path / "g.png"
    Image.fromarray(arr).save(path)
    r = read_radiograph(path)
    assert (r.format, r.photometric, r.bits) == ("png", "MONOCHROME2", bits)
    np.testing.assert_allclose(r.pixels, arr / top, atol=1e-6)
    assert read_image_size(path) == (40, 30)


def test_rgb_jpeg_becomes_grey(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
    path = tmp_path / "c.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    with Image.open(path) as im:
        expected = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    r = read_radiograph(path)
    assert (r.format, r.photometric, r.bits) == ("jpeg", "RGB", 8)
    assert r.pixels.shape == (24, 40)
    np.testing.assert_allclose(r.pixels, expected, atol=1 / 255 + 1e-6)


def test_grey_jpeg(tmp_path):
    arr = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (16, 1))
    path = tmp_path / "g.jpeg"
    Image.fromarray(arr).save(path, quality=100)
    r = read_radiograph(path)
    assert (r.photometric, r.bits) == ("MONOCHROME2", 8)
    assert np.abs(r.pixels - arr / 255.0).max() < 0.05


def test_jpeg_exif_rotation_is_applied_and_size_agrees(tmp_path):
    arr = np.zeros((20, 50), dtype=np.uint8)
    arr[:, :10] = 255  # bright band on the left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=100)
    r = read_radiograph(path)
    assert r.pixels.shape == (50, 20) == read_image_size(path)
    assert r.pixels[:10].mean() > 0.9 > 0.1 > r.pixels[-10:].mean()  # band now on top


def test_format_comes_from_content_not_extension(tmp_path):
    path = tmp_path / "actually_png.dcm"
    Image.fromarray(np.full((8, 9), 128, np.uint8)).save(path, format="PNG")
    assert read_radiograph(path).format == "png"


# --------------------------------------------------------------------------- bad inputs


def _missing(d: Path) -> Path:
    return d / "nope.dcm"


def _empty(d: Path) -> Path:
    (d / "empty.dcm").write_bytes(b"")
    return d / "empty.dcm"


def _empty_png(d: Path) -> Path:
    (d / "empty.png").write_bytes(b"")
    return d / "empty.png"


def _text_dcm(d: Path) -> Path:
    (d / "notes.dcm").write_text("patient looked fine\n" * 20)
    return d / "notes.dcm"


def _text_png(d: Path) -> Path:
    (d / "notes.png").write_text("hello")
    return d / "notes.png"


def _folder(d: Path) -> Path:
    (d / "folder.dcm").mkdir()
    return d / "folder.dcm"


def _truncated_jpeg(d: Path) -> Path:
    rng = np.random.default_rng(1)
    path = d / "cut.jpg"
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:600])
    return path


def _truncated_png(d: Path) -> Path:
    rng = np.random.default_rng(2)
    path = d / "cut.png"
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:1500])
    return path


def _tiff(d: Path) -> Path:
    path = d / "scan.tif"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    return path


def _no_pixels(d: Path) -> Path:
    return make_dicom(d / "nopix.dcm", ramp(), pixel_data=False)


def _multiframe(d: Path) -> Path:
    return make_dicom(d / "multi.dcm", np.stack([ramp()] * 3))


def _truncated_dicom(d: Path) -> Path:
    path = make_dicom(d / "cutpix.dcm", ramp(64, 64))
    path.write_bytes(path.read_bytes()[:-3000])
    return path


def _mpeg_dicom(d: Path) -> Path:
    path = make_dicom(d / "video.dcm", ramp())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _big_dicom(d: Path) -> Path:
    return make_dicom(d / "big.dcm", ramp(32, 48))


def _big_png(d: Path) -> Path:
    path = d / "big.png"
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(path)
    return path


BAD_INPUTS = [
    # (builder, message regex, also refused by read_image_size)
    (_missing, r"file not found", True),
    (_empty, r"empty \(0 bytes\)", True),
    (_empty_png, r"empty \(0 bytes\)", True),
    (_text_dcm, r"not a DICOM file", True),
    (_text_png, r"not a DICOM, PNG or JPEG file", True),
    (_folder, r"is a folder", True),
    (_tiff, r"TIFF file.*convert it to PNG", True),
    (_truncated_jpeg, r"truncated or damaged", False),
    (_truncated_png, r"truncated or damaged", False),
    (_no_pixels, r"no pixel data", False),
    (_multiframe, r"multi-frame DICOM \(3 frames\).*export the frame", False),
    (_truncated_dicom, r"truncated|could not be decoded", False),
    (_mpeg_dicom, r"transfer syntax 'MPEG2 Main Profile / Main Level'.*cannot be decoded", False),
    (_big_dicom, r"more than MAX_PIXELS = 100", False),
    (_big_png, r"more than MAX_PIXELS = 100", False),
]


@pytest.mark.parametrize("build,match,header", BAD_INPUTS, ids=[b[0].__name__ for b in BAD_INPUTS])
def test_bad_input_names_file_and_problem(tmp_path, monkeypatch, build, match, header):
    if build in (_big_dicom, _big_png):
        # MAX_PIXELS is read at call time from the module that defines it.
        monkeypatch.setattr(radiograph_mod, "MAX_PIXELS", 100)
    path = build(tmp_path)
    with pytest.raises(ImageReadError, match=match) as err:
        read_radiograph(path)
    assert path.name in str(err.value)
    if header:
        with pytest.raises(ImageReadError, match=match):
            read_image_size(path)


def test_inspect_cli_prints_json_and_png(tmp_path, capsys):
    arr = np.tile(np.linspace(0, 65535, 60).astype(np.uint16), (40, 1))
    src = tmp_path / "in.png"
    Image.fromarray(arr).save(src)
    out = tmp_path / "sub" / "crop.png"
    rc = main(["inspect", str(src), "--roi", "10,5,30,25", "--margin", "0.25", "--png", str(out)])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["box"] == [5, 0, 35, 30]
    assert (info["height"], info["width"], info["bits"]) == (30, 30, 16)
    assert (info["format"], info["photometric"]) == ("png", "MONOCHROME2")
    assert info["min"] == pytest.approx(arr[0, 5] / 65535, abs=1e-6)
    assert info["max"] == pytest.approx(arr[0, 34] / 65535, abs=1e-6)
    with Image.open(out) as im:
        assert (im.mode, im.size) == ("L", (30, 30))
    assert [p.name for p in out.parent.iterdir()] == ["crop.png"]  # no temp file left


@pytest.mark.realdata
def test_inspect_cli_real_dicom(tmp_path, capsys):
    assert main(["inspect", str(rg("RG3_J2KR.dcm")), "--size", "64"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["height"], info["width"]) == (64, 64)
    assert (info["photometric"], info["voi"], info["bits"]) == ("MONOCHROME1", "window", 10)


@pytest.mark.parametrize(
    "roi,match",
    [
        ("1,2,3", r"four comma-separated numbers"),
        ("a,b,c,d", r"four comma-separated numbers"),
        ("10,10,10,20", r"zero or negative area"),
        ("500,500,600,600", r"outside the image"),
    ],
)
def test_inspect_cli_bad_roi_exits_2(tmp_path, capsys, roi, match):
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(src)
    assert main(["inspect", str(src), "--roi", roi]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: roi")
    assert __import__("re").search(match, err)
