"""The layers of a Coded ResNeXt: the coded block, its energies, DropSubNNs, the concatenating expand conv
and the synchronized BatchNorm."""
