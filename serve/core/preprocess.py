"""The server's image preparation for one request (issue 14, item 12): each image is made to
look like the images its model learned from, before it is resized to the model's input.

What is done, and when, is zoo.preprocess (shared with `python -m zoo viz --image`, so the
pictures show what the server answers): a grayscale image on a light background is inverted
for models trained on MNIST or Fashion-MNIST (their metadata's dataset), and a digit not yet
at the model's size is cropped, scaled into MNIST's 20 x 20 box and centred by mass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from zoo.preprocess import Preprocessing, border_is_light, frame_digit, prepare

from .registry import ServedModel

__all__ = ["Preparer", "Preprocessing", "border_is_light", "frame_digit"]


@dataclass
class Preparer:
    """decode_images' `prepare` hook for one request; it notes, image by image, what it did."""

    model: ServedModel
    options: Preprocessing = Preprocessing()
    inverted: list[bool] = field(default_factory=list)
    framed: list[bool] = field(default_factory=list)

    def __call__(self, image: Image.Image) -> Image.Image:
        classifier = self.model.classifier()
        prepared = prepare(image, self.model.metadata.get("dataset", ""), (classifier.height, classifier.width),
                           self.options)
        self.inverted.append(prepared.inverted)
        self.framed.append(prepared.framed)
        return prepared.image
