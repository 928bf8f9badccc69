"""`python demo.py [--port 8000] [--app-port 7860]`: the same as `gradio-chat-gateway demo`."""
from gateway.command import demo

if __name__ == "__main__":
    demo(prog_name="demo.py")
