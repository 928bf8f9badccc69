"""Small protocol-faithful stand-ins for what a real local Gradio app cannot produce.

fake_gradio  a Gradio server speaking the /call API, scripted per test
hub          the Hugging Face Hub's /api/spaces endpoint, pointing at local apps
proxies      a real HTTP(S) CONNECT proxy and a real SOCKS5 proxy that count connections
apps         real Gradio apps that only these tests need
"""
