"""The platform's Pulumi components (`pulumi.ComponentResource`), one module each."""
