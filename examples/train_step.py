"""Build a scaled network and run one training step on random data, checking the memory the estimator predicts.

    python examples/train_step.py
"""

import torch

import scaler

spec = scaler.compound(scaler.load_spec("examples/small_cifar_net.toml"), phi=1)
model = scaler.build_model(spec).to(memory_format=torch.channels_last)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
images = torch.randn(32, 3, spec.resolution, spec.resolution).to(memory_format=torch.channels_last)
labels = torch.randint(0, spec.num_classes, (32,))

loss = torch.nn.functional.cross_entropy(model(images), labels)
loss.backward()
optimizer.step()

cost = scaler.estimate(spec, batch_size=32)
print(f"{spec.name}: {spec.resolution} px, loss {loss.item():.3f}")
print(f"params {cost.params:,}, FLOPs {cost.macs:,} per image, saved activations {cost.saved_activation_bytes:,} bytes")
