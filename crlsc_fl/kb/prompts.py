"""Class-name lists and prompt templates for text knowledge bases (paper: 'a photo of a {label}.')."""

from __future__ import annotations

from collections.abc import Callable

from crlsc_fl.data.datasets import CIFAR10_CLASSES
from crlsc_fl.registry import Registry

CLASS_NAMES: Registry[Callable[[], list[str]]] = Registry("class-name list")
TEMPLATES: Registry[Callable[[], list[str]]] = Registry("prompt template set")

CLASS_NAMES.register("cifar10")(lambda: list(CIFAR10_CLASSES))


@CLASS_NAMES.register("imagenet")
def _imagenet() -> list[str]:
    import open_clip

    return list(open_clip.IMAGENET_CLASSNAMES)


@CLASS_NAMES.register("cifar100")
def _cifar100() -> list[str]:
    # The canonical CIFAR-100 fine labels, alphabetical (= torchvision's label order).
    return [
        n.replace("_", " ") for n in (
            "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
            "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
            "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
            "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
            "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
            "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank "
            "telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
        ).split()
    ]


TEMPLATES.register("paper")(lambda: ["a photo of a {}."])


@TEMPLATES.register("simple")
def _simple() -> list[str]:
    import open_clip

    return [t("{}") for t in open_clip.SIMPLE_IMAGENET_TEMPLATES]


@TEMPLATES.register("openai")
def _openai() -> list[str]:
    import open_clip

    return [t("{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES]


def make_prompts(class_names: str, templates: str) -> list[str]:
    """All prompts ``template.format(name)`` for a named class list and template set."""
    names = CLASS_NAMES.get(class_names)()
    return [template.format(name) for name in names for template in TEMPLATES.get(templates)()]
