"""models/detection.py: registered ResNets as torchvision detection backbones (FPN, frozen stages and BN)."""
import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from models import ECA, create_model
from models.detection import resnet_fpn_backbone
from utils.errors import UserError

SMALL = dict(min_size=96, max_size=96, rpn_batch_size_per_image=32, box_batch_size_per_image=32,
             box_detections_per_img=10, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100,
             rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50)


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    """An official-style file: {'state_dict': {'module.' + key: tensor}} of a seeded ECA-ResNet-18 whose BN
    statistics are not the initial ones (so copying them is tested)."""
    torch.manual_seed(0)
    model = create_model("eca_resnet18", num_classes=10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("ckpt") / "eca_resnet18.pth.tar"
    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "arch": "eca_resnet18", "state_dict": state, "best_prec1": 0.0}, path)
    return path, state


def scenes(n=2, size=96, seed=0):
    """Images with one or two bright rectangles each, and their boxes (labels 1 and 2)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for i in range(n):
        image = torch.rand(3, size, size, generator=g) * 0.2
        boxes = torch.tensor([[10.0 + 4 * i, 12.0, 50.0 + 4 * i, 60.0], [55.0, 40.0, 90.0, 88.0]])
        for box, colour in zip(boxes.int(), (0, 1)):
            image[colour, box[1]:box[3], box[0]:box[2]] = 1.0
        images.append(image)
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 2])})
    return images, targets


def test_the_backbone_holds_the_checkpoints_weights(official_checkpoint):
    path, state = official_checkpoint
    for backbone in (resnet_fpn_backbone("eca_resnet18", weights=path), resnet_fpn_backbone(weights=path)):
        body = backbone.body.state_dict()
        compared = 0
        for key, value in body.items():
            assert "module." + key in state, key  # the body is the classifier up to layer4, under body.
            assert torch.equal(value, state["module." + key]), key
            compared += 1
        assert compared > 100 and not any(k.startswith("fc.") for k in body)
        assert backbone.out_channels == 256


def test_frozen_stages_and_frozen_batchnorm(official_checkpoint):
    path, _ = official_checkpoint
    reference = create_model("eca_resnet18", num_classes=10)
    backbone = resnet_fpn_backbone("eca_resnet18", weights=path, trainable_layers=3)
    body = backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    frozen = sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert frozen == sum(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    for name, parameter in body.named_parameters():
        trains = name.startswith(("layer2.", "layer3.", "layer4."))
        assert parameter.requires_grad == trains, name
    ecas = [m for m in body.modules() if isinstance(m, ECA)]
    assert len(ecas) == 8 and [m.k_size for m in ecas] == [3, 3, 5, 5, 7, 7, 7, 7]  # untouched, file's kernels
    assert all(p.requires_grad for p in backbone.fpn.parameters())
    everything = resnet_fpn_backbone("eca_resnet18", trainable_layers=5, frozen_bn=False)
    assert all(p.requires_grad for p in everything.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in everything.body.modules())


def test_faster_rcnn_trains_a_few_steps_and_evaluates(official_checkpoint):
    path, _ = official_checkpoint
    torch.manual_seed(0)
    detector = FasterRCNN(resnet_fpn_backbone("eca_resnet18", weights=path, trainable_layers=3), num_classes=3,
                          **SMALL)
    images, targets = scenes()
    optimizer = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    detector.train()
    losses = []
    for _ in range(6):
        loss = sum(detector(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses
    detector.eval()
    with torch.no_grad():
        outputs = detector(images)
    assert len(outputs) == len(images)
    for out in outputs:
        assert set(out) == {"boxes", "labels", "scores"}
        assert out["boxes"].shape[1:] == (4,) and len(out["labels"]) == len(out["scores"]) == len(out["boxes"])


def test_retinanet_runs_and_maskrcnn_builds():
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone("eca_resnet18", returned_layers=(2, 3, 4), extra_blocks=LastLevelP6P7(256, 256))
    retina = RetinaNet(backbone, num_classes=3, min_size=64, max_size=64, detections_per_img=10).eval()
    with torch.no_grad():
        outputs = retina([torch.rand(3, 64, 64)])
    assert set(outputs[0]) == {"boxes", "labels", "scores"}
    mask = MaskRCNN(resnet_fpn_backbone("eca_resnet18"), num_classes=3, min_size=64, max_size=64)
    assert mask.backbone.out_channels == 256


@pytest.mark.parametrize("arch", ["eca_mobilenet_v2", "mobilenet_v2"])
def test_other_families_are_refused_in_one_line(arch):
    with pytest.raises(UserError, match="ResNet-family") as info:
        resnet_fpn_backbone(arch)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="ResNet-family"):
        resnet_fpn_backbone(create_model(arch, num_classes=3))


def test_bad_stage_arguments_are_user_errors():
    with pytest.raises(UserError, match="trainable_layers"):
        resnet_fpn_backbone("eca_resnet18", trainable_layers=6)
    with pytest.raises(UserError, match="returned_layers"):
        resnet_fpn_backbone("eca_resnet18", returned_layers=(0, 2))


def test_torchvisions_feature_extractor_reads_a_registered_eca_resnet():
    model = create_model("eca_resnet18", num_classes=4).eval()
    extractor = create_feature_extractor(model, return_nodes={"layer1": "c2", "layer4": "c5"})
    with torch.no_grad():
        features = extractor(torch.rand(2, 3, 64, 64))
    assert features["c2"].shape == (2, 64, 16, 16)
    assert features["c5"].shape == (2, 512, 2, 2)
