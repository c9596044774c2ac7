"""Train or evaluate ECA-ResNets (and the comparison ResNets) on an ImageFolder dataset.

    python main.py -a eca_resnet50 --ksize 3557 /data/ILSVRC2012
    python main.py -a eca_resnet50 -e --resume eca_resnet50_k3557.pth.tar /data/ILSVRC2012
    python main.py -a eca_resnet18            # no DIR: the built-in demo dataset
"""
import sys

from utils.running.early_stop import remember_stop_signals

# Official ResNet recipe (paper §4.1): SGD, batch 256, lr 0.1 divided by 10 every 30 epochs, 100 epochs.
RECIPE = dict(arch="eca_resnet50", epochs=100, batch_size=256, lr=0.1, weight_decay=1e-4,
              lr_schedule="step", lr_step=30, lr_gamma=0.1, crop_size=224, val_resize=256)

# Without DIR: the built-in 64 px, 10-class demo set; a short cosine run that learns in CPU minutes.
BUILTIN = dict(arch="eca_resnet18", epochs=5, batch_size=64, lr=0.1, lr_schedule="cosine", warmup_epochs=0.5,
               crop_size=56, val_resize=64, crop_scale=0.35)

if __name__ == "__main__":
    remember_stop_signals()  # before torch is imported: a stop signal during start-up is kept, not fatal
    from utils.running.runner import run

    sys.exit(run(sys.argv[1:], RECIPE, BUILTIN, __doc__))
