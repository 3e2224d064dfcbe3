"""The platform's Pulumi program: config model, program, components and offline harness."""
