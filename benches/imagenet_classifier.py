"""The backbone's own ImageNet classifier (the shared EfficientNet-Lite0 file with its last layer), for the benches
that ask what the backbone sees in a crop (camera_imagenet.py, camera_subject.py)."""
import numpy as np
import onnxruntime as ort


def load(shared):
    """The classifier's onnxruntime session and the 1000 class names, from the shared folder."""
    session = ort.InferenceSession(f"{shared}/models/efficientnet_lite0_classifier_dynbatch.onnx",
                                   providers=["CPUExecutionProvider"])
    names = [line.strip() for line in open(f"{shared}/models/imagenet_classes.txt")]
    return session, names


def top1(session, tensors):
    """The top-1 class of each input tensor (3 × 224 × 224, in [-1, 1])."""
    return session.run(None, {"input": np.stack(tensors)})[0].argmax(1)


def kinds(top):
    """How many top-1 classes are a cat (ImageNet 281-285), another animal (0-397) and anything else."""
    cats = int(np.sum((top >= 281) & (top <= 285)))
    animals = int(np.sum(top <= 397)) - cats
    return cats, animals, len(top) - cats - animals
