"""Packed arrays: what rides in a clip's record between stages (pipeline.packing)."""
import numpy as np
import pytest

from pipeline.artifacts import pack_faces, unpack_faces
from pipeline.faces.align import AlignedFaces
from pipeline.packing import MAGIC, pack_arrays, unpack_arrays


def test_arrays_come_back_equal_in_dtype_shape_order_and_values():
    rng = np.random.default_rng(1)
    arrays = {
        "crops_7": rng.integers(0, 256, (3, 5, 5, 3), dtype=np.uint8),
        "affines_7": rng.normal(size=(3, 2, 3)),
        "flows": rng.normal(size=(0, 4, 4, 2)).astype(np.float16),  # a one-frame track has no flows
        "frames": np.arange(3, dtype=np.int64),
        "odd": rng.normal(size=(7,)).astype(np.float32)[::2],  # not contiguous
        "big_endian": np.arange(5, dtype=">i4"),
    }
    data = pack_arrays(arrays)
    assert data.startswith(MAGIC)
    back = unpack_arrays(data)
    assert list(back) == list(arrays)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        np.testing.assert_array_equal(back[name], array)
    assert pack_arrays({}) == b"" and unpack_arrays(b"") == {}


def test_unpacked_arrays_are_read_only_views_and_aligned():
    crops = np.full((2, 64, 64, 3), 9, np.uint8)
    data = pack_arrays({"a": np.ones(3, np.uint8), "crops": crops})
    back = unpack_arrays(data)["crops"]
    assert not back.flags.writeable and not back.flags.owndata
    assert back.ctypes.data % 64 == np.frombuffer(data, np.uint8).ctypes.data % 64
    with pytest.raises(ValueError, match="read-only"):
        back[0, 0, 0, 0] = 1
    copied = back.copy()
    copied[0] = 0  # a copy is the caller's to change
    assert (unpack_arrays(data)["crops"] == 9).all()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04 an old npz", "not packed arrays"),
        (b"short", "not packed arrays"),
        (MAGIC + (5).to_bytes(8, "little") + b"{nope", "unreadable header"),
    ],
)
def test_foreign_or_broken_data_is_refused_clearly(data, message):
    with pytest.raises(ValueError, match=message):
        unpack_arrays(data)


def test_truncated_data_is_refused_not_read_short():
    data = pack_arrays({"crops": np.zeros((4, 32, 32, 3), np.uint8)})
    with pytest.raises(ValueError, match="'crops' runs past the end: the data is truncated"):
        unpack_arrays(data[:-100])


def test_objects_do_not_pack():
    with pytest.raises(TypeError, match="'names' holds Python objects"):
        pack_arrays({"names": np.array(["a", None], dtype=object)})


def test_faces_round_trip_through_the_record_and_a_bad_record_names_itself():
    crops = np.random.default_rng(2).integers(0, 256, (3, 512, 512, 3), dtype=np.uint8)
    faces = {4: AlignedFaces(crops, np.zeros((3, 2, 3)), np.array([0, 1, 2])),
             1: AlignedFaces(crops[:1], np.ones((1, 2, 3)), np.array([5]))}  # fmt: skip
    back = unpack_faces(pack_faces(faces))
    assert list(back) == [1, 4]  # in track order
    np.testing.assert_array_equal(back[4].crops, crops)
    np.testing.assert_array_equal(back[1].affines, np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="the clip's face crops do not unpack"):
        unpack_faces(pack_arrays({"crops_1": crops}))  # its affines and frames are missing
