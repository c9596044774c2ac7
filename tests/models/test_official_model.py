"""Our ECA-ResNet trains as the official model does, bit for bit on the CPU in fp32: the same initial weights
for a seed (tests/e2e/test_train_cli.py), and the same forward, gradients and SGD steps. The official
eca_layer (github.com/BangguWu/ECANet, models/eca_module.py) pools, views the (N, C, 1, 1) means as (N, 1, C)
with squeeze(-1).transpose(-1, -2), convolves, views back, applies the sigmoid and multiplies with expand_as;
`OfficialFormECA` below is that sequence of operations, swapped into our model in place of our layer."""
import torch

from models import ECA, create_model


class OfficialFormECA(ECA):
    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * self.sigmoid(y).expand_as(x)


def train(model, steps=3, seed=0):
    """A few SGD steps of the official recipe (momentum 0.9, wd 1e-4, lr 0.1) on random images; the weights after."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    for _ in range(steps):
        images = torch.randn(8, 3, 32, 32, generator=generator)
        targets = torch.randint(0, 10, (8,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), targets).backward()
        optimizer.step()
    return model.state_dict()


def test_training_steps_are_the_official_layers_bit_for_bit():
    torch.manual_seed(3)
    ours = create_model("eca_resnet18", k_size=[3, 5, 7, 7], num_classes=10)
    official = create_model("eca_resnet18", k_size=[3, 5, 7, 7], num_classes=10)
    official.load_state_dict(ours.state_dict())
    swapped = 0
    for module in official.modules():
        if type(module) is ECA:
            module.__class__ = OfficialFormECA
            swapped += 1
    assert swapped == 8  # one per BasicBlock
    ours_after, official_after = train(ours), train(official)
    assert ours_after.keys() == official_after.keys()
    differing = [key for key in ours_after if not torch.equal(ours_after[key], official_after[key])]
    assert differing == [], differing[:5]
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ours.eval()(x), official.eval()(x))
