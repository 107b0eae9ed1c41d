"""provisioner: identity-provider sync and provisioning for regulated databases."""

__version__ = "0.1.0"
