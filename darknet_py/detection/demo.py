"""``detector demo``: a detector over a video file, every frame annotated as ``detector test``
draws its picture (pj:src/demo.c, AB:src/demo.c with ``-out_filename``), with the time each
step took.

Frames are decoded and encoded by imageio with its ffmpeg plugin (``pip install
'darknet_py[video]'``), not by hand: any container and codec ffmpeg reads.  Each frame goes
through detect_image (letterbox, the network, get_network_boxes, the cfg's NMS), the same path
as ``detector test`` and darknet_py.Detector, and draw_detections.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import DarknetError
from ..image import draw_detections
from .detect import detect_image, network_classes


def _imageio():
    try:
        import imageio.v2 as imageio
    except ImportError:
        imageio = None
    # imageio_ffmpeg is the plugin imageio reads and writes video files with
    if imageio is None or importlib.util.find_spec("imageio_ffmpeg") is None:
        raise DarknetError("detector demo reads videos with imageio and its ffmpeg plugin: "
                           "pip install 'darknet_py[video]' (or pip install imageio "
                           "imageio-ffmpeg)") from None
    return imageio


@dataclass
class DemoTimes:
    """Seconds spent per step over ``frames`` frames (decode, network with the boxes and NMS,
    draw, encode) and the wall time of the whole run."""
    frames: int = 0
    steps: dict = field(default_factory=lambda: dict.fromkeys(
        ("decode", "network", "draw", "encode"), 0.0))
    wall: float = 0.0

    def fps(self, step=None) -> float:
        seconds = self.wall if step is None else self.steps[step]
        return self.frames / seconds if seconds > 0 else float("inf")

    def line(self) -> str:
        parts = ", ".join(f"{k} {self.fps(k):.1f}" for k in self.steps)
        return f"{self.frames} frames, FPS: {self.fps():.1f} overall ({parts})"


def _even(frame):
    """H.264 in yuv420p needs an even width and height: repeat the last row/column."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def frame_count(path) -> int | None:
    """The number of frames of a video file, when its container says (None otherwise)."""
    imageio = _imageio()
    try:
        with imageio.get_reader(path) as reader:
            n = reader.count_frames()
    except Exception:           # a container without a count: the bar runs without a total
        return None
    return n if n and n != float("inf") else None


def annotate_video(net, names, src, dst, thresh: float = 0.25, nms: float = 0.45,
                   progress=None, on_frame=None) -> DemoTimes:
    """Detect in every frame of the video ``src`` and write the drawn frames to ``dst`` at the
    source's frame rate.  ``progress`` is told each frame done; ``on_frame(index, dets,
    (w, h))`` sees each frame's detections.  Returns the :class:`DemoTimes`."""
    imageio = _imageio()
    classes = network_classes(net)
    times = DemoTimes()
    t_start = time.perf_counter()
    try:
        reader = imageio.get_reader(src)
    except (OSError, ValueError, RuntimeError) as e:
        raise DarknetError(f"cannot read the video: {str(e).splitlines()[0]}", str(src)) from None
    with reader:
        fps = reader.get_meta_data().get("fps") or 25
        with imageio.get_writer(dst, fps=fps, macro_block_size=1) as writer:
            frames = iter(reader)
            while True:
                t0 = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except (OSError, RuntimeError) as e:
                    raise DarknetError(f"frame {times.frames + 1}: cannot decode "
                                       f"({str(e).splitlines()[0]})", str(src)) from None
                t1 = time.perf_counter()
                _, dets = detect_image(net, frame, thresh, 0.5, nms)
                t2 = time.perf_counter()
                drawn = draw_detections(Image.fromarray(np.ascontiguousarray(frame[:, :, :3])),
                                        dets, names, thresh, classes=classes)
                t3 = time.perf_counter()
                writer.append_data(_even(np.asarray(drawn)))
                t4 = time.perf_counter()
                for step, seconds in zip(times.steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    times.steps[step] += seconds
                if on_frame is not None:
                    on_frame(times.frames, dets, (frame.shape[1], frame.shape[0]))
                times.frames += 1
                if progress is not None:
                    progress(1)
    times.wall = time.perf_counter() - t_start
    return times
