"""Security: TLS with a certificate made here, loopback by default, names never paths,
weights never unpickled."""

from __future__ import annotations

import datetime
import ipaddress
import re
from pathlib import Path

import grpc
import pytest

from serve.gen import predictor_pb2 as pb
from serve.gen import predictor_pb2_grpc
from serve.config import ServeConfig
from tests.serving import TIMEOUT, predictor_stub, running_server

ROOT = Path(__file__).resolve().parent.parent


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_a_self_signed_certificate(models_dir, tmp_path, mnist_batch):
    _, x, labels = mnist_batch
    cert, key = self_signed(tmp_path)
    with running_server(models_dir, tls_cert=cert, tls_key=key) as (_, port):
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            stub = predictor_pb2_grpc.PredictorStub(channel)
            response = stub.Predict(pb.PredictRequest(model="lenet5-mnist", tensor=pb.Tensor(
                shape=[8, 1, 28, 28], dtype=pb.DTYPE_FLOAT32, data=x[:8].tobytes())), timeout=TIMEOUT)
        assert [p.top_k[0].index for p in response.predictions] == labels[:8].tolist()
        with predictor_stub(port) as plain:  # a plaintext client cannot talk to a TLS server
            with pytest.raises(grpc.RpcError) as info:
                plain.ListModels(pb.ListModelsRequest(), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_loopback_and_caps_by_default():
    from serve.__main__ import build_parser
    from serve.config import MAX_MESSAGE_BYTES

    assert ServeConfig().host == "127.0.0.1"
    assert build_parser().parse_args([]).host == "127.0.0.1"
    assert MAX_MESSAGE_BYTES == 32 * 1024 * 1024


@pytest.mark.parametrize("name", ["../lenet5-mnist", "/etc/passwd", "lenet5-mnist.onnx/..", "a/b", "..",
                                  ".hidden", "x" * 200, "lenet5-mnist\0", "~root", ""])
def test_model_names_cannot_be_paths(models_dir, name):
    with running_server(models_dir) as (_, port), predictor_stub(port) as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.GetModel(pb.GetModelRequest(model=name), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not valid" in info.value.details()


def test_nothing_of_ours_unpickles():
    pattern = re.compile(r"\bpickle\b|torch\.load\(|np\.load\(.*allow_pickle=True|joblib")
    offenders = [str(p) for folder in ("zoo", "export", "serve", "bench")
                 for p in (ROOT / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    weights = list((ROOT / "zoo" / "weights").iterdir())
    assert weights and {p.suffix for p in weights} <= {".safetensors", ".json", ".csv", ".png"}
