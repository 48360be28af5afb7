"""The searches, thin siblings on the study engine (scaler.study): `compound` searches the scaling coefficients
alpha, beta, gamma; `baseline` searches the network to scale. Each defines its recipe, its candidates and its
objective; everything else is the engine's."""
