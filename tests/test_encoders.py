"""The encoders a run writes with (pipeline.encoders): settings that fit together, ffmpeg's options, and
the check that refuses an NVENC run before any work where no node can encode with it."""
from __future__ import annotations

import shutil

import pytest

from pipeline.cluster import SetupError
from pipeline.config import ConfigError, EncodeSettings, load_settings
from pipeline.encoders import EncoderError, check_encoder, check_encoder_on_nodes, encoder_args
from pipeline.restorer import encode_settings_for

NVENC = EncodeSettings(codec="h264_nvenc", preset="p5")
has_nvidia_driver = shutil.which("nvidia-smi") is not None


def test_presets_must_fit_the_codec_and_the_message_says_which_to_set():
    with pytest.raises(ConfigError, match="preset='veryfast' does not fit encode.codec=h264_nvenc.*p1"):
        EncodeSettings(codec="h264_nvenc")
    with pytest.raises(ConfigError, match="encode.preset='p4' does not fit encode.codec=libx264.*veryfast"):
        EncodeSettings(preset="p4")
    with pytest.raises(ConfigError, match="NVENC writes 4:2:0 or 4:4:4"):
        EncodeSettings(codec="hevc_nvenc", preset="p4", pix_fmt="yuv422p")
    with pytest.raises(ConfigError, match="h264_nvenc writes 8 bits; use hevc_nvenc"):
        EncodeSettings(codec="h264_nvenc", preset="p4", pix_fmt="yuv420p10le")
    with pytest.raises(ConfigError, match="encode.preset"):
        load_settings(None, ["encode.codec=hevc_nvenc"])
    assert load_settings(None, ["encode.codec=hevc_nvenc", "encode.preset=p6"]).encode.codec == "hevc_nvenc"


def test_nvenc_takes_its_constant_quality_mode_at_the_crf_level():
    nvenc = ["-c:v", "h264_nvenc", "-preset", "p5", "-rc", "vbr", "-cq", "18", "-b:v", "0"]
    assert encoder_args(NVENC) == nvenc
    assert encoder_args(EncodeSettings(crf=20)) == ["-c:v", "libx264", "-crf", "20", "-preset", "veryfast"]


def test_ten_bit_sources_keep_ten_bits_except_with_h264_nvenc():
    assert encode_settings_for(64, 64, 10, EncodeSettings()).pix_fmt == "yuv420p10le"
    hevc = EncodeSettings(codec="hevc_nvenc", preset="p4")
    assert encode_settings_for(64, 64, 10, hevc).pix_fmt == "yuv420p10le"
    assert encode_settings_for(64, 64, 10, NVENC).pix_fmt == "yuv420p"
    assert encode_settings_for(63, 64, 8, NVENC).pix_fmt == "yuv444p"


def test_the_cpu_encoders_encode_here():
    check_encoder(EncodeSettings())
    check_encoder(EncodeSettings(codec="libx265", preset="ultrafast"))


@pytest.mark.skipif(has_nvidia_driver, reason="this machine has an NVIDIA driver: NVENC may work here")
def test_nvenc_without_a_driver_fails_with_ffmpegs_reason():
    with pytest.raises(EncoderError, match="libcuda"):
        check_encoder(NVENC)


def test_an_nvenc_run_on_a_cluster_without_gpus_is_refused():
    with pytest.raises(SetupError, match="encode.codec=h264_nvenc, but the Ray cluster has no GPU.*libx264"):
        check_encoder_on_nodes(NVENC, gpus=0)
    check_encoder_on_nodes(EncodeSettings(), gpus=0)  # nothing to check for libx264


@pytest.mark.skipif(has_nvidia_driver, reason="this machine has an NVIDIA driver: NVENC may work here")
def test_an_nvenc_run_is_refused_naming_each_node_that_cannot_encode():
    """A local Ray that declares a GPU it does not have: the check runs ffmpeg on the node and refuses."""
    import ray

    ray.shutdown()
    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        node = ray.get_runtime_context().get_node_id()[:8]
        with pytest.raises(SetupError, match=rf"cannot encode on 1 of 1 nodes \(node .*{node}\): .*libcuda"):
            check_encoder_on_nodes(NVENC, gpus=1)
    finally:
        ray.shutdown()
