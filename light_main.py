"""Train or evaluate ECA-MobileNetV2 (and MobileNetV2 / SE-MobileNetV2) on an ImageFolder dataset.

    python light_main.py -a eca_mobilenet_v2 /data/ILSVRC2012
    python light_main.py -e --resume eca_mobilenetv2_k13.pth.tar /data/ILSVRC2012
"""
import sys

from utils.running.early_stop import remember_stop_signals

# Official MobileNetV2 recipe: SGD, batch 96, wd 4e-5, lr 0.045 x 0.98 every epoch, 400 epochs.
RECIPE = dict(arch="eca_mobilenet_v2", epochs=400, batch_size=96, lr=0.045, weight_decay=4e-5,
              lr_schedule="exp", lr_gamma=0.98, crop_size=224, val_resize=256)

# Without DIR: the built-in 64 px, 10-class demo set.
BUILTIN = dict(epochs=5, batch_size=64, lr=0.05, lr_schedule="cosine", warmup_epochs=0.5,
               crop_size=56, val_resize=64, crop_scale=0.35)

if __name__ == "__main__":
    remember_stop_signals()  # before torch is imported: a stop signal during start-up is kept, not fatal
    from utils.running.runner import run

    sys.exit(run(sys.argv[1:], RECIPE, BUILTIN, __doc__))
